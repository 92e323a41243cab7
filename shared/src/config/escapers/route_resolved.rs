//! Config of `type: route_resolved`: the next escaper chosen by the target's address, a name
//! resolved first (`resolver`, `resolve_strategy`, `resolution_delay`): `lpm_match`
//! (`{next, networks}`, longest prefix), else `default_next`.

use std::time::Duration;

use serde::Deserialize;

use super::rules::{nexts, subnet_rules};
use super::{EscaperKind, ResolveStrategy};
use crate::config::de::Parts;
use crate::config::error::ConfigError;
use crate::types::{HumanDuration, IpNetwork};

impl EscaperKind for RouteResolvedConfig {
    fn resolver(&self) -> Option<&str> {
        Some(&self.resolution.resolver)
    }

    fn next_escapers(&self) -> Vec<&str> {
        let mut names = vec![self.default_next.as_str()];
        names.extend(nexts(&self.lpm_match));
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// How the routes on the target's address (`route_resolved`, `route_geoip`) resolve a name
/// first.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct TargetResolution {
    pub resolver: String,
    #[serde(default)]
    pub resolve_strategy: ResolveStrategy,
    /// How long to wait for the preferred family once the other answered.
    #[serde(default = "default_resolution_delay")]
    pub resolution_delay: HumanDuration,
}

impl TargetResolution {
    /// Decodes `config` (whose own keys leave its resolution out) and its resolution keys
    /// from one entry.
    pub(super) fn decode_with<T: serde::de::DeserializeOwned>(
        parts: &mut Parts,
        resolution: impl FnOnce(&mut T) -> &mut TargetResolution,
    ) -> Result<T, ConfigError> {
        let mut config: T = parts.decode()?;
        *resolution(&mut config) = parts.decode()?;
        Ok(config)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteResolvedConfig {
    /// Its own keys (see [`TargetResolution::decode_with`]).
    #[serde(skip)]
    pub resolution: TargetResolution,
    pub default_next: String,
    #[serde(default, alias = "lpm_rules", deserialize_with = "subnet_rules")]
    pub lpm_match: Vec<(String, Vec<IpNetwork>)>,
}

impl RouteResolvedConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        TargetResolution::decode_with(parts, |config: &mut Self| &mut config.resolution)
    }
}

fn default_resolution_delay() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}
