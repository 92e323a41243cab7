//! Config of `type: proxy_socks5` and `type: proxy_socks5s`: chain to a next-hop SOCKS5
//! proxy, in plain text or over TLS. TCP goes through SOCKS5 `CONNECT` (RFC 1928), with
//! username and password (RFC 1929) when `proxy_username` is set.

use serde::Deserialize;

use super::EscaperKind;
use super::next_hop::{NextHopConfig, PeerTlsConfig};
use crate::config::de::Parts;
use crate::config::error::ConfigError;

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

/// The keys of a SOCKS5 next hop: those of its UDP side, which this build does not relay
/// through a next hop yet.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Socks5PeerKeys {
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub transmute_udp_peer_ip: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub end_on_control_closed: (),
    #[serde(
        default,
        alias = "udp_relay_speed_limit",
        alias = "udp_relay_limit",
        alias = "relay_limit",
        deserialize_with = "crate::config::de::not_yet"
    )]
    pub udp_sock_speed_limit: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub udp_misc_opts: (),
}
