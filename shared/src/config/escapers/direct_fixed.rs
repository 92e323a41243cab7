//! Config of `type: direct_fixed`: connect straight to the target, from fixed bind addresses,
//! after the egress network filter allows it.

use std::net::IpAddr;

use serde::Deserialize;

use super::EscaperKind;
use super::direct::DirectConfig;
use crate::config::de::Parts;
use crate::config::error::ConfigError;

impl EscaperKind for DirectFixedConfig {
    fn resolver(&self) -> Option<&str> {
        Some(&self.direct.resolver)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirectFixedConfig {
    pub direct: DirectConfig,
    /// Local addresses to connect from; one is picked at random per connection.
    pub bind_ip: Vec<IpAddr>,
    /// A request's path number (`egress_path_selection_header`) picks the bind address of
    /// the target's family by its place, as g3 maps numbers.
    pub enable_path_selection: bool,
}

impl DirectFixedConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Own {
            #[serde(default)]
            bind_ip: Vec<IpAddr>,
            #[serde(default)]
            enable_path_selection: bool,
        }
        let direct = parts.decode()?;
        let own: Own = parts.decode()?;
        Ok(DirectFixedConfig {
            direct,
            bind_ip: own.bind_ip,
            enable_path_selection: own.enable_path_selection,
        })
    }
}
