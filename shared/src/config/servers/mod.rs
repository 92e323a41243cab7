//! Server configs. Every entry is decoded twice over the same keys: once into
//! [`ServerCommon`], the fields all server types share, and once into its type's own struct;
//! a key neither takes is refused at its line. A new server type is its file here and one
//! line in [`server_types!`] below, plus its runtime in `worker/src/servers/`.

mod dummy_close;
mod http_proxy;
mod http_rproxy;
mod http_session;
mod intelli_proxy;
mod ports;
mod sni_proxy;
mod socks_proxy;
mod tcp_stream;
mod tcp_tproxy;

use std::collections::BTreeMap;

pub use dummy_close::DummyCloseConfig;
pub use http_proxy::HttpProxyConfig;
pub use http_rproxy::{ForwardedFor, HttpRproxyConfig, RproxyHost, UpstreamKeepalive};
pub use http_session::HttpSessionConfig;
pub use intelli_proxy::IntelliProxyConfig;
pub use ports::{NativeTlsPortConfig, PlainTcpPortConfig, PlainTlsPortConfig, ProxyProtocol};
pub use sni_proxy::{AllowedHost, SniProxyConfig};
pub use socks_proxy::{PortRange, SocketBuffer, SocksProxyConfig};
pub use tcp_stream::{StreamConfig, TcpStreamConfig, TlsStreamConfig};
pub use tcp_tproxy::TcpTproxyConfig;

use serde::Deserialize;

use super::de::Parts;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;
use crate::types::{HumanDuration, HumanSize, ListenSpec, NetworkAcl, SpeedLimit, TcpMiscOpts};

fn default_task_idle_check_interval() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_task_idle_max_count() -> u32 {
    5
}
fn default_tcp_copy_buffer_size() -> HumanSize {
    HumanSize(16 * 1024)
}

/// The keys every server type has (g3's common server keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerCommon {
    pub name: String,
    #[serde(default)]
    pub listen: Option<ListenSpec>,
    #[serde(default)]
    pub listen_in_worker: bool,
    /// Checked against the client address: the socket's peer, or the address a PROXY
    /// protocol header reported when a port hands the connection on.
    #[serde(default, alias = "ingress_net_filter")]
    pub ingress_network_filter: Option<NetworkAcl>,
    #[serde(
        default,
        alias = "tcp_conn_speed_limit",
        alias = "tcp_conn_limit",
        alias = "conn_limit"
    )]
    pub tcp_sock_speed_limit: Option<SpeedLimit>,
    #[serde(
        default,
        alias = "udp_relay_speed_limit",
        alias = "udp_relay_limit",
        alias = "relay_limit"
    )]
    pub udp_sock_speed_limit: Option<SpeedLimit>,
    #[serde(
        default = "default_task_idle_check_interval",
        deserialize_with = "crate::types::bounds::timeout",
        alias = "task_idle_check_duration"
    )]
    pub task_idle_check_interval: HumanDuration,
    #[serde(
        default = "default_task_idle_max_count",
        deserialize_with = "crate::types::bounds::idle_count"
    )]
    pub task_idle_max_count: u32,
    #[serde(
        default = "default_tcp_copy_buffer_size",
        deserialize_with = "crate::types::bounds::buffer_size"
    )]
    pub tcp_copy_buffer_size: HumanSize,
    #[serde(default, deserialize_with = "crate::types::metric_tags")]
    pub extra_metrics_tags: BTreeMap<String, String>,
    /// Options set on every accepted connection.
    #[serde(default)]
    pub tcp_misc_opts: TcpMiscOpts,
    /// Task log events as a task starts and once its upstream is connected, besides the one
    /// as it ends (g3's `task_event: Created` / `Connected`).
    #[serde(default)]
    pub flush_task_log_on_created: bool,
    #[serde(default)]
    pub flush_task_log_on_connected: bool,
    /// A `Periodic` event this often while a tunnel relays (its bytes so far).
    #[serde(default, deserialize_with = "crate::types::bounds::optional_timeout")]
    pub task_log_flush_interval: Option<HumanDuration>,
}

/// The fact a facts user group matches a connection's user by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsMatch {
    /// `auth_by_client_ip`.
    ClientIp,
    /// `auth_by_server_ip`: the address the client connected to (tcp_tproxy: its target).
    ServerIp,
    /// `auth_by_server_name`: the target host (sni_proxy: the SNI or `Host`).
    ServerName,
}

/// One of a server's `auth_by_*` switches, refusing two at once as g3 does.
pub(crate) fn facts_match(
    choices: &[(bool, FactsMatch, &str)],
) -> Result<Option<FactsMatch>, String> {
    let on: Vec<_> = choices.iter().filter(|(on, _, _)| *on).collect();
    match on.as_slice() {
        [] => Ok(None),
        [(_, kind, _)] => Ok(Some(*kind)),
        _ => Err(format!(
            "only one of {} can be enabled",
            choices
                .iter()
                .map(|(_, _, key)| *key)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What the loader needs to know of any server type: the modules it refers to.
pub trait ServerKind {
    fn escaper(&self) -> Option<&str> {
        None
    }
    fn user_group(&self) -> Option<&str> {
        None
    }
    fn auditor(&self) -> Option<&str> {
        None
    }
    /// Whether the server asks clients for a user name and password (HTTP Basic, SOCKS5
    /// username/password), which is what a basic user group checks.
    fn checks_passwords(&self) -> bool {
        false
    }
    /// The connection fact a stream server finds its user by (`auth_by_*`), in a facts
    /// user group.
    fn facts_auth(&self) -> Option<FactsMatch> {
        None
    }
    /// Servers this one hands its connections to (ports, intelli_proxy).
    fn next_servers(&self) -> Vec<&str> {
        Vec::new()
    }
    /// Rules between keys that decoding alone cannot see; the error names the entry.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    /// Whether the listening socket takes connections for other addresses (IP_TRANSPARENT).
    fn transparent(&self) -> bool {
        false
    }
}

/// The registry: one line per server type, `Variant(Config) = "type" | "alias"...`. A group
/// of keys several types share is a part decoded on its own: `Variant(Config { field })`
/// fills `Config::field` (a `#[serde(skip)]` field) from the same entry.
macro_rules! server_types {
    ($($variant:ident($config:ty $({ $part:ident })?) = $name:literal $(| $alias:literal)*;)*) => {
        // A handful of these live per config; boxing the large ones would save nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum ServerType {
            $($variant($config),)*
        }

        impl ServerType {
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(ServerType::$variant(_) => $name,)*
                }
            }

            pub fn kind(&self) -> &dyn ServerKind {
                match self {
                    $(ServerType::$variant(config) => config,)*
                }
            }
        }

        fn decode_type(
            type_name: &str,
            node: &Node,
            path: &str,
        ) -> Option<Result<ServerConfig, ConfigError>> {
            match type_name {
                $($name $(| $alias)* => Some((|| {
                    let mut parts = Parts::new(node, path);
                    let common: ServerCommon = parts.decode()?;
                    #[allow(unused_mut)]
                    let mut own: $config = parts.decode()?;
                    $(own.$part = parts.decode()?;)?
                    parts.finish()?;
                    Ok(ServerConfig { common, server_type: ServerType::$variant(own) })
                })()),)*
                _ => None,
            }
        }
    };
}

server_types! {
    HttpProxy(HttpProxyConfig { session }) = "http_proxy" | "httpproxy";
    SocksProxy(SocksProxyConfig) = "socks_proxy" | "socksproxy";
    PlainTcpPort(PlainTcpPortConfig) = "plain_tcp_port" | "plain_tcp";
    PlainTlsPort(PlainTlsPortConfig) = "plain_tls_port" | "plain_tls";
    NativeTlsPort(NativeTlsPortConfig) = "native_tls_port" | "native_tls";
    IntelliProxy(IntelliProxyConfig) = "intelli_proxy" | "ppdp_tcp_port";
    DummyClose(DummyCloseConfig) = "dummy_close";
    TcpStream(TcpStreamConfig) = "tcp_stream" | "tcpstream";
    TlsStream(TlsStreamConfig) = "tls_stream" | "tlsstream";
    SniProxy(SniProxyConfig) = "sni_proxy" | "sniproxy";
    TcpTproxy(TcpTproxyConfig) = "tcp_tproxy" | "tcptproxy" | "tcp_transparent";
    HttpRproxy(HttpRproxyConfig { session }) = "http_rproxy" | "httprproxy" | "http_gateway"
        | "httpgateway" | "http_reverse_proxy" | "httpreverseproxy";
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub common: ServerCommon,
    pub server_type: ServerType,
}

/// Types g3proxy has that this build does not run yet: named so the error says so plainly.
const NOT_YET: &[&str] = &["plain_quic_port", "plain_quic"];

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<ServerConfig, ConfigError> {
    if let Some(decoded) = decode_type(type_name, node, path) {
        let config = decoded?;
        config
            .server_type
            .kind()
            .check()
            .map_err(|message| ConfigError::at(&node.file, path, node.line, message))?;
        return Ok(config);
    }
    let message = if NOT_YET.contains(&type_name) {
        format!("server type {type_name} is not supported by this build yet")
    } else {
        format!("unknown server type {type_name}")
    };
    Err(type_error(type_node, path, message))
}

impl ServerConfig {
    pub fn name(&self) -> &str {
        &self.common.name
    }

    pub fn type_name(&self) -> &'static str {
        self.server_type.type_name()
    }

    /// The listen spec, with the socket options the server type needs.
    pub fn listen(&self) -> Option<ListenSpec> {
        let mut spec = self.common.listen.clone()?;
        spec.transparent = self.server_type.kind().transparent();
        Some(spec)
    }

    pub fn listen_in_worker(&self) -> bool {
        self.common.listen_in_worker
    }

    pub fn escaper(&self) -> Option<&str> {
        self.server_type.kind().escaper()
    }

    pub fn user_group(&self) -> Option<&str> {
        self.server_type.kind().user_group()
    }

    pub fn auditor(&self) -> Option<&str> {
        self.server_type.kind().auditor()
    }

    pub fn next_servers(&self) -> Vec<&str> {
        self.server_type.kind().next_servers()
    }

    pub fn ingress_network_filter(&self) -> Option<&NetworkAcl> {
        self.common.ingress_network_filter.as_ref()
    }
}
