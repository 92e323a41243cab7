//! Resolver configs, one file per `type`. As for escapers, every entry is decoded into
//! [`ResolverCommon`] and into its type's own struct over the same keys; the resolvers that ask
//! name servers also take [`CacheTtl`]. A new resolver type is its file here, one line in
//! [`decode`], and its runtime in `worker/src/resolvers/`.

mod c_ares;
mod fail_over;
mod hickory;

pub use c_ares::{CAresConfig, EachTimeout, ServerList};
pub use fail_over::FailOverConfig;
pub use hickory::{DnsEncryption, DnsProtocol, HickoryConfig};

use std::time::Duration;

use serde::Deserialize;

use super::de::Parts;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;
use crate::types::HumanDuration;

/// The keys every resolver type has.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResolverCommon {
    pub name: String,
    /// How long g3 keeps a replaced resolver's thread for lookups still in flight. A
    /// generation here keeps its resolvers until its last task ends, so the key is accepted
    /// and has nothing to do.
    #[serde(default = "default_graceful_stop_wait")]
    pub graceful_stop_wait: HumanDuration,
    /// The longest a lookup may take, whatever the type's own timeouts and tries add up to;
    /// a lookup cut by it is cached as failed for the negative TTL.
    #[serde(
        default = "default_protective_query_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub protective_query_timeout: HumanDuration,
}

fn default_graceful_stop_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_protective_query_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// How long answers of a name server stay cached, in seconds (g3's clamps): an answer is
/// fresh for its TTL kept within `positive_min_ttl ..= positive_max_ttl`, then served stale
/// while it is asked again until its own TTL runs out; a failure or an empty answer is kept
/// for `negative_min_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CacheTtl {
    #[serde(default = "default_min_ttl")]
    pub positive_min_ttl: u32,
    #[serde(
        default = "default_max_ttl",
        alias = "positive_ttl",
        alias = "max_cache_ttl",
        alias = "maximum_cache_ttl"
    )]
    pub positive_max_ttl: u32,
    #[serde(
        default = "default_min_ttl",
        alias = "negative_ttl",
        alias = "protective_cache_ttl"
    )]
    pub negative_min_ttl: u32,
    /// Accepted as g3's hickory config does, and unused there as here.
    #[serde(default)]
    pub negative_max_ttl: Option<u32>,
}

fn default_min_ttl() -> u32 {
    30
}
fn default_max_ttl() -> u32 {
    3600
}

impl Default for CacheTtl {
    fn default() -> Self {
        CacheTtl {
            positive_min_ttl: default_min_ttl(),
            positive_max_ttl: default_max_ttl(),
            negative_min_ttl: default_min_ttl(),
            negative_max_ttl: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResolverType {
    CAres(CAresConfig),
    /// Boxed: its TLS client config is large beside the other types.
    Hickory(Box<HickoryConfig>),
    FailOver(FailOverConfig),
    DenyAll,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolverConfig {
    pub common: ResolverCommon,
    /// The defaults for the types that ask no name server themselves.
    pub ttl: CacheTtl,
    pub resolver_type: ResolverType,
}

/// Keys no type takes: the type's own struct lists every other key.
#[derive(Deserialize)]
struct NoKeys {}

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<ResolverConfig, ConfigError> {
    let mut parts = Parts::new(node, path);
    let common: ResolverCommon = parts.decode()?;
    let (ttl, resolver_type) = match type_name {
        "c_ares" | "cares" => (parts.decode()?, ResolverType::CAres(parts.decode()?)),
        "hickory" | "hickory_dns" | "trust_dns" => (
            parts.decode()?,
            ResolverType::Hickory(Box::new(parts.decode()?)),
        ),
        "fail_over" | "failover" => (CacheTtl::default(), ResolverType::FailOver(parts.decode()?)),
        "deny_all" | "denyall" => {
            parts.decode::<NoKeys>()?;
            (CacheTtl::default(), ResolverType::DenyAll)
        }
        other => {
            return Err(type_error(
                type_node,
                path,
                format!("unknown resolver type {other}"),
            ));
        }
    };
    parts.finish()?;
    Ok(ResolverConfig {
        common,
        ttl,
        resolver_type,
    })
}

impl ResolverConfig {
    pub fn name(&self) -> &str {
        &self.common.name
    }

    /// As g3 names the type in logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self.resolver_type {
            ResolverType::CAres(_) => "c-ares",
            ResolverType::Hickory(_) => "hickory",
            ResolverType::FailOver(_) => "fail-over",
            ResolverType::DenyAll => "deny-all",
        }
    }

    /// The resolvers this one asks in turn (fail_over), each with the key that names it.
    pub fn next_resolvers(&self) -> Vec<(&'static str, &str)> {
        match &self.resolver_type {
            ResolverType::FailOver(f) => vec![("primary", &f.primary), ("standby", &f.standby)],
            _ => Vec::new(),
        }
    }
}
