//! Server configs, one file per `type`. A new server type is its file here, one line in
//! [`decode`], and its runtime in `worker/src/servers/`.

mod http_proxy;
mod socks_proxy;

pub use http_proxy::HttpProxyConfig;
pub use socks_proxy::SocksProxyConfig;

use super::de::decode as decode_as;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;
use crate::types::{ListenSpec, NetworkAcl};

#[derive(Debug, Clone, PartialEq)]
pub enum ServerConfig {
    HttpProxy(HttpProxyConfig),
    SocksProxy(SocksProxyConfig),
}

/// Types g3proxy has that this build does not run yet: named so the error says so plainly.
const NOT_YET: &[&str] = &[
    "tcp_stream",
    "tls_stream",
    "sni_proxy",
    "http_rproxy",
    "http_gateway",
    "http_reverse_proxy",
    "tcp_tproxy",
    "intelli_proxy",
    "ppdp_tcp_port",
    "plain_tcp_port",
    "plain_tcp",
    "plain_tls_port",
    "plain_tls",
    "native_tls_port",
    "native_tls",
    "plain_quic_port",
    "plain_quic",
    "dummy_close",
];

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<ServerConfig, ConfigError> {
    match type_name {
        "http_proxy" | "httpproxy" => decode_as(node, path).map(ServerConfig::HttpProxy),
        "socks_proxy" | "socksproxy" => decode_as(node, path).map(ServerConfig::SocksProxy),
        other if NOT_YET.contains(&other) => Err(type_error(
            type_node,
            path,
            format!("server type {other} is not supported by this build yet"),
        )),
        other => Err(type_error(
            type_node,
            path,
            format!("unknown server type {other}"),
        )),
    }
}

impl ServerConfig {
    pub fn name(&self) -> &str {
        match self {
            ServerConfig::HttpProxy(c) => &c.name,
            ServerConfig::SocksProxy(c) => &c.name,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ServerConfig::HttpProxy(_) => "http_proxy",
            ServerConfig::SocksProxy(_) => "socks_proxy",
        }
    }

    pub fn listen(&self) -> Option<&ListenSpec> {
        match self {
            ServerConfig::HttpProxy(c) => c.listen.as_ref(),
            ServerConfig::SocksProxy(c) => c.listen.as_ref(),
        }
    }

    pub fn listen_in_worker(&self) -> bool {
        match self {
            ServerConfig::HttpProxy(c) => c.listen_in_worker,
            ServerConfig::SocksProxy(c) => c.listen_in_worker,
        }
    }

    pub fn escaper(&self) -> &str {
        match self {
            ServerConfig::HttpProxy(c) => &c.escaper,
            ServerConfig::SocksProxy(c) => &c.escaper,
        }
    }

    pub fn user_group(&self) -> Option<&str> {
        match self {
            ServerConfig::HttpProxy(c) => c.user_group.as_deref(),
            ServerConfig::SocksProxy(c) => c.user_group.as_deref(),
        }
    }

    pub fn auditor(&self) -> Option<&str> {
        match self {
            ServerConfig::HttpProxy(c) => c.auditor.as_deref(),
            ServerConfig::SocksProxy(c) => c.auditor.as_deref(),
        }
    }

    pub fn ingress_network_filter(&self) -> Option<&NetworkAcl> {
        match self {
            ServerConfig::HttpProxy(c) => c.ingress_network_filter.as_ref(),
            ServerConfig::SocksProxy(c) => c.ingress_network_filter.as_ref(),
        }
    }
}
