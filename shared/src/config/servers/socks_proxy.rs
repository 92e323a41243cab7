//! Config of `type: socks_proxy`: SOCKS5 (CONNECT, UDP ASSOCIATE) and SOCKS4/4a CONNECT.
//!
//! UDP follows g3proxy: by default the simplified "udp connect" (the first datagram fixes the
//! one target of the session), or with `use_udp_associate` a target per datagram. The
//! client-facing UDP socket binds to `udp_bind_ipv4` / `udp_bind_ipv6` (else the address the
//! client reached us on) within `udp_bind_port_range`; `transmute_udp_echo_ip` rewrites the
//! address announced in the reply.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::ServerKind;
use crate::types::{HumanDuration, HumanSize, TransmuteIp};

fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}
fn default_udp_client_initial_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SocksProxyConfig {
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auditor: Option<String>,
    /// Time allowed from accept to a complete SOCKS request.
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub negotiation_timeout: HumanDuration,
    #[serde(
        default,
        alias = "enable_udp_associate",
        alias = "udp_associate_enabled"
    )]
    pub use_udp_associate: bool,
    #[serde(default)]
    pub udp_bind_ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub udp_bind_ipv6: Vec<Ipv6Addr>,
    #[serde(default)]
    pub udp_bind_port_range: Option<PortRange>,
    #[serde(default)]
    pub udp_socket_buffer: Option<SocketBuffer>,
    #[serde(default, alias = "auto_reply_local_ip_map")]
    pub transmute_udp_echo_ip: Option<TransmuteIp>,
    /// How long the client has, after the reply, to send its first datagram.
    #[serde(
        default = "default_udp_client_initial_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub udp_client_initial_timeout: HumanDuration,
}

impl ServerKind for SocksProxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn checks_passwords(&self) -> bool {
        true
    }
    fn auditor(&self) -> Option<&str> {
        self.auditor.as_deref()
    }
}

/// Ports to bind in, `"start-end"` or `{start|from, end|to}`; start above 0, end above start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RangeMap {
            #[serde(alias = "from")]
            start: u16,
            #[serde(alias = "to")]
            end: u16,
        }
        struct RangeVisitor;
        impl<'de> de::Visitor<'de> for RangeVisitor {
            type Value = (u16, u16);
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port range such as \"20000-20999\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<(u16, u16), E> {
                let invalid = || E::custom(format!("invalid port range {text:?}"));
                let (start, end) = text.split_once('-').ok_or_else(invalid)?;
                Ok((
                    start.trim().parse().map_err(|_| invalid())?,
                    end.trim().parse().map_err(|_| invalid())?,
                ))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<(u16, u16), A::Error> {
                let range = RangeMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok((range.start, range.end))
            }
        }
        let (start, end) = deserializer.deserialize_any(RangeVisitor)?;
        if start == 0 || end <= start {
            return Err(de::Error::custom(format!(
                "invalid port range {start}-{end}: start above 0, end above start"
            )));
        }
        Ok(PortRange { start, end })
    }
}

/// Socket buffer sizes: one size for both, or `{recv, send}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketBuffer {
    pub recv: Option<usize>,
    pub send: Option<usize>,
}

impl<'de> Deserialize<'de> for SocketBuffer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct BufferMap {
            #[serde(default, alias = "receive", alias = "read")]
            recv: Option<HumanSize>,
            #[serde(default, alias = "write")]
            send: Option<HumanSize>,
        }
        struct BufferVisitor;
        impl<'de> de::Visitor<'de> for BufferVisitor {
            type Value = SocketBuffer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as 512K, or {recv, send}")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<SocketBuffer, E> {
                let size = usize::try_from(bytes).map_err(E::custom)?;
                Ok(SocketBuffer {
                    recv: Some(size),
                    send: Some(size),
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketBuffer, E> {
                let bytes = HumanSize::parse(text)
                    .ok_or_else(|| E::custom(format!("invalid size: {text:?}")))?;
                self.visit_u64(bytes)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SocketBuffer, A::Error> {
                let sizes = BufferMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SocketBuffer {
                    recv: sizes.recv.map(|s| s.0 as usize),
                    send: sizes.send.map(|s| s.0 as usize),
                })
            }
        }
        deserializer.deserialize_any(BufferVisitor)
    }
}
