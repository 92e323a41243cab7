//! Resolver configs, one file per `type`. A new resolver type is its file here, one line in
//! [`decode`], and its runtime in `worker/src/resolvers/`.

mod c_ares;

pub use c_ares::CAresConfig;

use super::de::decode as decode_as;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;

#[derive(Debug, Clone, PartialEq)]
pub enum ResolverConfig {
    CAres(CAresConfig),
}

const NOT_YET: &[&str] = &[
    "hickory",
    "hickory_dns",
    "trust_dns",
    "fail_over",
    "failover",
    "deny_all",
    "denyall",
];

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<ResolverConfig, ConfigError> {
    match type_name {
        "c_ares" | "cares" => decode_as(node, path).map(ResolverConfig::CAres),
        other if NOT_YET.contains(&other) => Err(type_error(
            type_node,
            path,
            format!("resolver type {other} is not supported by this build yet"),
        )),
        other => Err(type_error(
            type_node,
            path,
            format!("unknown resolver type {other}"),
        )),
    }
}

impl ResolverConfig {
    pub fn name(&self) -> &str {
        match self {
            ResolverConfig::CAres(c) => &c.name,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ResolverConfig::CAres(_) => "c-ares",
        }
    }
}
