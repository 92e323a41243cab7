//! Config of `type: route_query`: the next escaper named by an agent, asked over UDP in
//! g3proxy's MessagePack protocol (`{id, user, host[, client_ip]}` → `{id, nodes, ttl}`), its
//! answers cached per user and host; one of `query_allowed_next`, else `fallback_node`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::EscaperKind;
use crate::types::{HumanDuration, PickPolicy};

impl EscaperKind for RouteQueryConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.query_allowed_next.iter().map(String::as_str).collect();
        names.push(&self.fallback_node);
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteQueryConfig {
    /// The escapers an answer may name; others in an answer are ignored.
    #[serde(deserialize_with = "distinct_names")]
    pub query_allowed_next: Vec<String>,
    /// Where a task goes when the agent names no allowed escaper in time.
    pub fallback_node: String,
    #[serde(default = "default_peer", alias = "query_peer_address")]
    pub query_peer_addr: SocketAddr,
    /// Whether the client's address goes in the query (`client_ip`).
    #[serde(default)]
    pub query_pass_client_ip: bool,
    /// How long a task waits for an answer before it takes the fallback.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub cache_request_timeout: HumanDuration,
    /// How long a query waits for the agent before its key is cached as unanswered.
    #[serde(
        default = "default_wait_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub query_wait_timeout: HumanDuration,
    /// Seconds an empty or unanswered query, or an answer without a ttl, is cached.
    #[serde(default = "default_protective_ttl")]
    pub protective_cache_ttl: u32,
    #[serde(default = "default_maximum_ttl")]
    pub maximum_cache_ttl: u32,
    /// How long an expired answer is still used while it is asked again.
    #[serde(default = "default_vanish_wait", alias = "vanish_after_expired")]
    pub cache_vanish_wait: HumanDuration,
    #[serde(default = "default_pick")]
    pub cache_pick_policy: PickPolicy,
    /// g3's batching of cache requests, which this build does not need; accepted.
    #[serde(default)]
    pub cache_request_batch_count: Option<usize>,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub query_socket_buffer: (),
}

fn default_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1053))
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_wait_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_protective_ttl() -> u32 {
    10
}
fn default_maximum_ttl() -> u32 {
    1800
}
fn default_vanish_wait() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_pick() -> PickPolicy {
    PickPolicy::Ketama
}

fn distinct_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    if names.is_empty() {
        return Err(de::Error::custom(
            "no escaper is allowed: name at least one",
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(de::Error::custom(format!("{name} is listed twice")));
        }
    }
    Ok(names)
}
