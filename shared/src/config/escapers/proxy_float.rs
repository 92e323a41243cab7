//! Config of `type: proxy_float` (alias `proxy_dynamic`): chain to next-hop proxies that are
//! published at run time (`g3proxy-ctl escaper NAME publish`), each with its own type and
//! expiry; and the published peers' form, read by the supervisor (to refuse a bad publish
//! before anything changes) and by the workers (to use it).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use super::direct_float::parse_expire;
use super::next_hop::check_login;
use super::{EscaperKind, TcpConnectConfig};
use crate::config::tls::TlsClientConfig;
use crate::types::{
    Expire, HumanDuration, Secret, SpeedLimit, TcpKeepalive, TcpMiscOpts, UdpMiscOpts,
};

impl EscaperKind for ProxyFloatConfig {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProxyFloatConfig {
    #[serde(default)]
    pub source: FloatSource,
    /// Where each publish is kept, read back when the group starts after a reboot.
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// For the `https` and `socks5s` peers (the system's CAs when left out).
    #[serde(default, alias = "tls")]
    pub tls_client: Option<TlsClientConfig>,
    /// A peer is not used from this long before its `expire`.
    #[serde(default = "default_expire_guard")]
    pub expire_guard_duration: HumanDuration,
    #[serde(
        default = "default_tcp_connect_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub tcp_connect_timeout: HumanDuration,
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub peer_negotiation_timeout: HumanDuration,
    #[serde(default)]
    pub bind_interface: Option<String>,
    #[serde(default)]
    pub tcp_keepalive: TcpKeepalive,
    #[serde(default)]
    pub tcp_misc_opts: TcpMiscOpts,
    /// How often a `redis` source is read; the passive source has nothing to read.
    #[serde(default)]
    pub refresh_interval: Option<HumanDuration>,
    /// IP-level options of the escaper's UDP sockets.
    #[serde(default)]
    pub udp_misc_opts: UdpMiscOpts,
}

fn default_expire_guard() -> HumanDuration {
    HumanDuration::secs(5)
}
fn default_tcp_connect_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

impl ProxyFloatConfig {
    /// How the next hops are connected to: one address, no retry.
    pub fn tcp_connect(&self) -> TcpConnectConfig {
        TcpConnectConfig {
            max_retry: 0,
            each_timeout: self.tcp_connect_timeout,
        }
    }
}

/// `source`: where peers come from. Only `passive` (peers are published to us) is served; a
/// `redis` source is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatSource {
    #[default]
    Passive,
}

impl<'de> Deserialize<'de> for FloatSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "type")]
            source_type: String,
        }
        let value = serde_json::Value::deserialize(deserializer)?;
        let kind = match &value {
            Value::String(text) => text.split(':').next().unwrap_or_default().to_string(),
            Value::Object(_) => {
                serde_json::from_value::<Typed>(value.clone())
                    .map_err(|_| de::Error::custom("a source map has a type"))?
                    .source_type
            }
            _ => {
                return Err(de::Error::custom(
                    "source is `passive`, or a map with a type",
                ));
            }
        };
        match crate::config::normalize_key(&kind).as_str() {
            "passive" => Ok(FloatSource::Passive),
            "redis" | "redis_cluster" => Err(de::Error::custom(
                "a redis source is not supported by this build yet: use passive and publish",
            )),
            other => Err(de::Error::custom(format!("unknown source type {other}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    Http,
    Https,
    Socks5,
    Socks5s,
}

/// One published peer: `{"type": "http|https|socks5|socks5s", "addr": "ip:port", "expire":
/// …, "username", "password", "tls_name", "tcp_sock_speed_limit", "id", "isp", "eip",
/// "area"}` (`id` names the peer for a user's `egress_path_id_map`; `isp`, `eip`, `area`
/// describe the egress for g3's metrics and are not used here).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatPeer {
    pub kind: PeerKind,
    pub addr: SocketAddr,
    pub expire: Option<Expire>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls_name: Option<String>,
    pub tcp_sock_speed_limit: Option<SpeedLimit>,
    pub id: Option<String>,
}

impl FloatPeer {
    /// Peers of a publish: one map or a list of them.
    pub fn parse_all(text: &str) -> Result<Vec<FloatPeer>, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let records = match value {
            Value::Array(records) => records,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        records
            .iter()
            .enumerate()
            .map(|(index, record)| parse_peer(record).map_err(|e| format!("peer [{index}]: {e}")))
            .collect()
    }

    /// Whether the peer may be used now: not within `guard` seconds of its expiry.
    pub fn is_usable(&self, guard: u64) -> bool {
        !self.expire.is_some_and(|e| e.is_past(guard))
    }
}

/// One peer, as a publish or a user's `egress_path_value_map` gives it.
pub fn parse_peer(value: &Value) -> Result<FloatPeer, String> {
    let Value::Object(map) = value else {
        return Err("a peer is a map".into());
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(format!("{key} is a string, not {other}")),
        }
    };
    let kind = match text("type")?.ok_or("type is missing")?.as_str() {
        "http" => PeerKind::Http,
        "https" => PeerKind::Https,
        "socks5" => PeerKind::Socks5,
        "socks5s" | "socks5+tls" => PeerKind::Socks5s,
        other => {
            return Err(format!(
                "unknown peer type {other:?}: http, https, socks5, socks5s"
            ));
        }
    };
    let addr_text = text("addr")?.ok_or("addr is missing")?;
    let addr = addr_text
        .parse()
        .map_err(|_| format!("invalid addr {addr_text:?}: an ip:port"))?;
    let mut peer = FloatPeer {
        kind,
        addr,
        expire: None,
        username: None,
        password: None,
        tls_name: None,
        tcp_sock_speed_limit: None,
        id: text("id")?,
    };
    for (key, value) in map {
        match crate::config::normalize_key(key).as_str() {
            "type" | "addr" | "id" | "isp" | "eip" | "area" => {}
            "expire" => peer.expire = Some(parse_expire(value)?),
            "username" | "user" => peer.username = text(key)?,
            "password" | "passwd" => peer.password = text(key)?.map(Secret),
            "tls_name" => peer.tls_name = text(key)?,
            "tcp_sock_speed_limit" | "tcp_conn_speed_limit" | "tcp_conn_limit" => {
                let limit = serde_json::from_value(value.clone())
                    .map_err(|e| format!("invalid {key}: {e}"))?;
                peer.tcp_sock_speed_limit = Some(limit);
            }
            _ => return Err(format!("unknown key {key:?}")),
        }
    }
    if let Some(name) = &peer.tls_name
        && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        return Err(format!("invalid tls_name {name:?}"));
    }
    check_login(peer.username.as_deref(), peer.password.as_ref())?;
    Ok(peer)
}
