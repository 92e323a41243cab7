//! The keys both direct escapers have (`direct_fixed`, `direct_float`): how targets are
//! resolved, filtered and connected to, and the socket options toward them; and the value
//! types they share with the others (resolve strategy, `tcp_connect`, `happy_eyeballs`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::config::servers::ProxyProtocol;
use crate::types::{HumanDuration, NetworkAcl, SpeedLimit, TcpKeepalive, TcpMiscOpts, UdpMiscOpts};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DirectConfig {
    pub resolver: String,
    #[serde(default)]
    pub resolve_strategy: ResolveStrategy,
    #[serde(default, alias = "egress_net_filter")]
    pub egress_network_filter: Option<NetworkAcl>,
    #[serde(default)]
    pub no_ipv4: bool,
    #[serde(default)]
    pub no_ipv6: bool,
    #[serde(default)]
    pub tcp_connect: TcpConnectConfig,
    #[serde(default)]
    pub happy_eyeballs: HappyEyeballsConfig,
    /// Outgoing connections leave through this device (`SO_BINDTODEVICE`).
    #[serde(default)]
    pub bind_interface: Option<String>,
    #[serde(default)]
    pub tcp_keepalive: TcpKeepalive,
    #[serde(default)]
    pub tcp_misc_opts: TcpMiscOpts,
    /// Per connection toward the target: upload is what we send it.
    #[serde(default, alias = "tcp_conn_speed_limit", alias = "tcp_conn_limit")]
    pub tcp_sock_speed_limit: Option<SpeedLimit>,
    /// A PROXY protocol header with the client's addresses, first on every connection.
    #[serde(default)]
    pub use_proxy_protocol: Option<ProxyProtocol>,
    /// Per socket toward targets: upload is what we send. A datagram over it is dropped.
    #[serde(default, alias = "udp_relay_speed_limit", alias = "udp_relay_limit")]
    pub udp_sock_speed_limit: Option<SpeedLimit>,
    /// IP-level options of the escaper's UDP sockets.
    #[serde(default)]
    pub udp_misc_opts: UdpMiscOpts,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub resolve_redirection: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub bind_foreign: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub bind_foreign_port: (),
}

/// `happy_eyeballs` (RFC 8305): how long to wait for the preferred family's addresses once
/// the other family's came, how long for the other family once connecting began, how many
/// preferred addresses go before the first of the other family, and the pause between two
/// connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HappyEyeballsConfig {
    #[serde(default = "default_resolution_delay", alias = "first_resolution_delay")]
    pub resolution_delay: HumanDuration,
    #[serde(
        default = "default_second_resolution_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub second_resolution_timeout: HumanDuration,
    #[serde(default = "default_first_family_count")]
    pub first_address_family_count: usize,
    #[serde(default = "default_connection_attempt_delay")]
    pub connection_attempt_delay: HumanDuration,
}

fn default_resolution_delay() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(50))
}
fn default_second_resolution_timeout() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_first_family_count() -> usize {
    1
}
fn default_connection_attempt_delay() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(250))
}

impl Default for HappyEyeballsConfig {
    fn default() -> Self {
        HappyEyeballsConfig {
            resolution_delay: default_resolution_delay(),
            second_resolution_timeout: default_second_resolution_timeout(),
            first_address_family_count: default_first_family_count(),
            connection_attempt_delay: default_connection_attempt_delay(),
        }
    }
}

fn default_max_retry() -> usize {
    2
}
fn default_each_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConnectConfig {
    /// Further addresses tried after the first one fails.
    #[serde(
        default = "default_max_retry",
        deserialize_with = "crate::types::bounds::retries"
    )]
    pub max_retry: usize,
    #[serde(
        default = "default_each_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub each_timeout: HumanDuration,
}

impl TcpConnectConfig {
    /// These (an escaper's) within a user's: the fewer tries, the shorter timeout.
    pub fn bounded_by(&self, user: &TcpConnectConfig) -> TcpConnectConfig {
        TcpConnectConfig {
            max_retry: self.max_retry.min(user.max_retry),
            each_timeout: self.each_timeout.min(user.each_timeout),
        }
    }
}

impl Default for TcpConnectConfig {
    fn default() -> Self {
        TcpConnectConfig {
            max_retry: default_max_retry(),
            each_timeout: default_each_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
pub enum QueryStrategy {
    #[default]
    #[serde(rename = "ipv4first", alias = "ipv4_first")]
    Ipv4First,
    #[serde(rename = "ipv6first", alias = "ipv6_first")]
    Ipv6First,
    #[serde(rename = "ipv4only", alias = "ipv4_only")]
    Ipv4Only,
    #[serde(rename = "ipv6only", alias = "ipv6_only")]
    Ipv6Only,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum PickStrategy {
    #[default]
    #[serde(rename = "first")]
    First,
    #[serde(rename = "random")]
    Random,
}

/// `resolve_strategy`: a query strategy alone (`IPv4First`), or `{query, pick}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolveStrategy {
    pub query: QueryStrategy,
    pub pick: PickStrategy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveStrategyMap {
    #[serde(default)]
    query: QueryStrategy,
    #[serde(default)]
    pick: PickStrategy,
}

impl<'de> Deserialize<'de> for ResolveStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrategyVisitor;
        impl<'de> Visitor<'de> for StrategyVisitor {
            type Value = ResolveStrategy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a query strategy such as IPv4First, or a map with query and pick")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ResolveStrategy, E> {
                let normalized = crate::config::normalize_key(text);
                let query =
                    QueryStrategy::deserialize(de::value::StrDeserializer::<E>::new(&normalized))?;
                Ok(ResolveStrategy {
                    query,
                    pick: PickStrategy::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ResolveStrategy, A::Error> {
                let raw =
                    ResolveStrategyMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ResolveStrategy {
                    query: raw.query,
                    pick: raw.pick,
                })
            }
        }
        deserializer.deserialize_any(StrategyVisitor)
    }
}
