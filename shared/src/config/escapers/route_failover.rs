//! Config of `type: route_failover` (alias `failover`): every connection tries `primary_next`
//! (alias `primary`) first; `standby_next` (alias `standby`) is tried as soon as the primary
//! fails, or alongside it once `fallback_delay` (aliases `delay`, `timeout`; 100ms) passed
//! without an answer. The first to connect wins.

use serde::Deserialize;

use super::EscaperKind;
use crate::types::HumanDuration;

fn default_fallback_delay() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteFailoverConfig {
    #[serde(alias = "primary")]
    pub primary_next: String,
    #[serde(alias = "standby")]
    pub standby_next: String,
    #[serde(
        default = "default_fallback_delay",
        alias = "delay",
        alias = "timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub fallback_delay: HumanDuration,
}

impl EscaperKind for RouteFailoverConfig {
    fn next_escapers(&self) -> Vec<&str> {
        vec![self.primary_next.as_str(), self.standby_next.as_str()]
    }

    fn check(&self) -> Result<(), String> {
        if self.primary_next == self.standby_next {
            return Err(format!(
                "primary_next and standby_next are both {:?}: a failover needs two ways out",
                self.primary_next
            ));
        }
        Ok(())
    }
}
