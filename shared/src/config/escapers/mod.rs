//! Escaper configs, one file per `type`. A new escaper type is its file here, one line in
//! [`decode`], and its runtime in `worker/src/escapers/`.

mod direct_fixed;

pub use direct_fixed::{
    DirectFixedConfig, PickStrategy, QueryStrategy, ResolveStrategy, TcpConnectConfig,
};

use super::de::decode as decode_as;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;

#[derive(Debug, Clone, PartialEq)]
pub enum EscaperConfig {
    DirectFixed(DirectFixedConfig),
}

const NOT_YET: &[&str] = &[
    "direct_float",
    "direct_dynamic",
    "proxy_http",
    "proxy_https",
    "proxy_socks5",
    "proxy_socks5s",
    "proxy_float",
    "proxy_dynamic",
    "divert_tcp",
    "dummy_deny",
    "comply_audit",
    "trick_float",
    "route_mapping",
    "route_select",
    "route_upstream",
    "route_resolved",
    "route_dst_ip",
    "route_geoip",
    "route_geo_ip",
    "route_client",
    "route_query",
    "route_failover",
];

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<EscaperConfig, ConfigError> {
    match type_name {
        "direct_fixed" | "directfixed" => decode_as(node, path).map(EscaperConfig::DirectFixed),
        other if NOT_YET.contains(&other) => Err(type_error(
            type_node,
            path,
            format!("escaper type {other} is not supported by this build yet"),
        )),
        other => Err(type_error(
            type_node,
            path,
            format!("unknown escaper type {other}"),
        )),
    }
}

impl EscaperConfig {
    pub fn name(&self) -> &str {
        match self {
            EscaperConfig::DirectFixed(c) => &c.name,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            EscaperConfig::DirectFixed(_) => "direct_fixed",
        }
    }

    pub fn resolver(&self) -> Option<&str> {
        match self {
            EscaperConfig::DirectFixed(c) => Some(&c.resolver),
        }
    }
}
