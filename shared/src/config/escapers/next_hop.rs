//! The keys every `proxy_*` escaper has: which next-hop proxies, how to reach them (resolved,
//! raced, from which address, with which socket options), our credentials for them; and the
//! TLS keys of the `s` variants. Each type's own keys are in its file.

use std::net::{Ipv4Addr, Ipv6Addr};

use g3proxy_proto::Host;
use serde::Deserialize;

use super::{HappyEyeballsConfig, ResolveStrategy, TcpConnectConfig};
use crate::config::servers::ProxyProtocol;
use crate::config::tls::TlsClientConfig;
use crate::types::{
    HumanDuration, PickPolicy, Secret, SpeedLimit, TcpKeepalive, TcpMiscOpts, UpstreamAddr,
    WeightedAddr,
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NextHopConfig {
    /// One address or a list, entries optionally weighted.
    pub proxy_addr: Vec<WeightedAddr>,
    #[serde(default)]
    pub proxy_addr_pick_policy: PickPolicy,
    /// Resolves `proxy_addr` entries given by name.
    #[serde(default)]
    pub resolver: Option<String>,
    #[serde(default)]
    pub resolve_strategy: ResolveStrategy,
    #[serde(default, alias = "proxy_user")]
    pub proxy_username: Option<String>,
    #[serde(default, alias = "proxy_passwd")]
    pub proxy_password: Option<Secret>,
    /// How long the next hop has to answer our handshake (`CONNECT`, SOCKS5, TLS).
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub peer_negotiation_timeout: HumanDuration,
    #[serde(default)]
    pub tcp_connect: TcpConnectConfig,
    #[serde(default)]
    pub happy_eyeballs: HappyEyeballsConfig,
    #[serde(default)]
    pub bind_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub bind_ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    pub bind_interface: Option<String>,
    #[serde(default)]
    pub no_ipv4: bool,
    #[serde(default)]
    pub no_ipv6: bool,
    #[serde(default)]
    pub tcp_keepalive: TcpKeepalive,
    #[serde(default)]
    pub tcp_misc_opts: TcpMiscOpts,
    /// Per connection to the next hop: upload is what we send it.
    #[serde(
        default,
        alias = "tcp_conn_speed_limit",
        alias = "tcp_conn_limit",
        alias = "conn_limit"
    )]
    pub tcp_sock_speed_limit: Option<SpeedLimit>,
    /// A PROXY header (v1 or v2) with the client's addresses, first on each connection to
    /// the next hop (before TLS for the `s` variants).
    #[serde(default)]
    pub use_proxy_protocol: Option<ProxyProtocol>,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub pass_proxy_userid: (),
}

fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

impl NextHopConfig {
    /// One next hop at `addr` with every other key at its default (a published float peer).
    pub fn single(addr: std::net::SocketAddr) -> NextHopConfig {
        NextHopConfig {
            proxy_addr: vec![WeightedAddr {
                addr: UpstreamAddr {
                    host: Host::Ip(addr.ip()),
                    port: Some(addr.port()),
                },
                weight: 1.0,
            }],
            proxy_addr_pick_policy: PickPolicy::default(),
            resolver: None,
            resolve_strategy: ResolveStrategy::default(),
            proxy_username: None,
            proxy_password: None,
            peer_negotiation_timeout: default_negotiation_timeout(),
            tcp_connect: TcpConnectConfig::default(),
            happy_eyeballs: HappyEyeballsConfig::default(),
            bind_ipv4: None,
            bind_ipv6: None,
            bind_interface: None,
            no_ipv4: false,
            no_ipv6: false,
            tcp_keepalive: TcpKeepalive::default(),
            tcp_misc_opts: TcpMiscOpts::default(),
            tcp_sock_speed_limit: None,
            use_proxy_protocol: None,
            pass_proxy_userid: (),
        }
    }

    /// Rules between keys that decoding alone cannot see.
    pub fn check(&self) -> Result<(), String> {
        if self.proxy_addr.is_empty() {
            return Err("proxy_addr is empty: name at least one next-hop proxy".into());
        }
        let by_name = self
            .proxy_addr
            .iter()
            .any(|entry| matches!(entry.addr.host, Host::Domain(_)));
        if by_name && self.resolver.is_none() {
            return Err("proxy_addr names a host: set resolver to look it up".into());
        }
        check_login(self.proxy_username.as_deref(), self.proxy_password.as_ref())
            .map_err(|e| format!("proxy_{e}"))
    }
}

/// Our login for a next hop, as both Basic (RFC 7617: the user-id ends at the first colon)
/// and SOCKS5 (RFC 1929: each part at most 255 bytes) can carry it, without control
/// characters. The error names the part (`username: …`, `password: …`).
pub fn check_login(user: Option<&str>, password: Option<&Secret>) -> Result<(), String> {
    let controls = |text: &str| text.chars().any(char::is_control);
    match (user, password) {
        (None, Some(_)) => Err("password without a username".into()),
        (Some(user), _) if user.contains(':') => {
            Err("username may not contain ':' (Basic auth splits there)".into())
        }
        (Some(user), _) if controls(user) || user.len() > 255 => {
            Err("username: at most 255 bytes, no control characters".into())
        }
        (_, Some(password)) if controls(&password.0) || password.0.len() > 255 => {
            Err("password: at most 255 bytes, no control characters".into())
        }
        _ => Ok(()),
    }
}

/// `tls_client` (alias `tls`; the system's CAs when left out) and `tls_name` (the name the
/// next hop's certificate is checked against; its address's host when left out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerTlsConfig {
    #[serde(default, alias = "tls")]
    pub tls_client: Option<TlsClientConfig>,
    #[serde(default)]
    pub tls_name: Option<String>,
}
