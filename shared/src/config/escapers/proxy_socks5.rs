//! Config of `type: proxy_socks5` and `type: proxy_socks5s`: chain to a next-hop SOCKS5
//! proxy, in plain text or over TLS. TCP goes through SOCKS5 `CONNECT` (RFC 1928), with
//! username and password (RFC 1929) when `proxy_username` is set; UDP through its UDP
//! ASSOCIATE.

use serde::Deserialize;

use super::EscaperKind;
use super::next_hop::{NextHopConfig, PeerTlsConfig};
use crate::config::de::Parts;
use crate::config::error::ConfigError;
use crate::types::{SpeedLimit, TransmuteIp, UdpMiscOpts};

/// The next hop's port when `proxy_addr` names none.
pub const DEFAULT_SOCKS_PROXY_PORT: u16 = 1080;

impl EscaperKind for ProxySocks5Config {
    fn resolver(&self) -> Option<&str> {
        self.next_hop.resolver.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        self.next_hop.check()
    }
}

/// `proxy_socks5`, and `proxy_socks5s` (the same with `tls`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySocks5Config {
    pub next_hop: NextHopConfig,
    pub socks: Socks5PeerKeys,
    /// `proxy_socks5s`: TLS to the next hop.
    pub tls: Option<PeerTlsConfig>,
}

impl ProxySocks5Config {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        Ok(ProxySocks5Config {
            next_hop: parts.decode()?,
            socks: parts.decode()?,
            tls: None,
        })
    }

    pub(super) fn decode_tls(parts: &mut Parts) -> Result<Self, ConfigError> {
        Ok(ProxySocks5Config {
            tls: Some(parts.decode()?),
            ..Self::decode(parts)?
        })
    }
}

/// The keys of a SOCKS5 next hop's UDP side.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Socks5PeerKeys {
    /// Rewrites the relay address the next hop announces (see [`TransmuteIp::relay_ip`]).
    #[serde(default)]
    pub transmute_udp_peer_ip: TransmuteIp,
    /// The control connection's end ends the association even before anything came back.
    #[serde(default)]
    pub end_on_control_closed: bool,
    /// Per association: upload is what we send the relay. A datagram over it is dropped.
    #[serde(
        default,
        alias = "udp_relay_speed_limit",
        alias = "udp_relay_limit",
        alias = "relay_limit"
    )]
    pub udp_sock_speed_limit: Option<SpeedLimit>,
    /// IP-level options of the escaper's UDP sockets.
    #[serde(default)]
    pub udp_misc_opts: UdpMiscOpts,
}
