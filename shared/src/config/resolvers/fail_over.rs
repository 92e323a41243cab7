//! Config of `type: fail_over`: two resolvers, the standby asked once the primary has not
//! answered within `fallback_delay`.

use std::time::Duration;

use serde::Deserialize;

use crate::types::HumanDuration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FailOverConfig {
    pub primary: String,
    pub standby: String,
    #[serde(
        default = "default_fallback_delay",
        alias = "delay",
        alias = "fallback_timeout",
        alias = "timeout"
    )]
    pub fallback_delay: HumanDuration,
    /// Seconds a failure is cached (g3's `negative_ttl`).
    #[serde(default = "default_negative_ttl", alias = "protective_cache_ttl")]
    pub negative_ttl: u32,
    /// An empty answer of the primary counts as a failure: the standby is asked.
    #[serde(default)]
    pub retry_empty_record: bool,
}

fn default_fallback_delay() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_negative_ttl() -> u32 {
    30
}
