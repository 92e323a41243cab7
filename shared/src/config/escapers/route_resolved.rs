//! Config of `type: route_resolved`: the next escaper chosen by the target's address, a name
//! resolved first (`resolver`, `resolve_strategy`, `resolution_delay`): `lpm_match`
//! (`{next, networks}`, longest prefix), else `default_next`.

use std::time::Duration;

use serde::Deserialize;

use super::rules::{nexts, subnet_rules};
use super::{EscaperKind, ResolveStrategy};
use crate::types::{HumanDuration, IpNetwork};

impl EscaperKind for RouteResolvedConfig {
    fn resolver(&self) -> Option<&str> {
        Some(&self.resolver)
    }

    fn next_escapers(&self) -> Vec<&str> {
        let mut names = vec![self.default_next.as_str()];
        names.extend(nexts(&self.lpm_match));
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteResolvedConfig {
    pub resolver: String,
    #[serde(default)]
    pub resolve_strategy: ResolveStrategy,
    /// How long to wait for the preferred family once the other answered.
    #[serde(default = "default_resolution_delay")]
    pub resolution_delay: HumanDuration,
    pub default_next: String,
    #[serde(default, alias = "lpm_rules", deserialize_with = "subnet_rules")]
    pub lpm_match: Vec<(String, Vec<IpNetwork>)>,
}

fn default_resolution_delay() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}
