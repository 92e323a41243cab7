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
}

impl DirectFixedConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Own {
            #[serde(default)]
            bind_ip: Vec<IpAddr>,
        }
        let direct = parts.decode()?;
        let own: Own = parts.decode()?;
        Ok(DirectFixedConfig {
            direct,
            bind_ip: own.bind_ip,
        })
    }
}
