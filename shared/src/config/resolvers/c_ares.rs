//! Config of `type: c-ares`: DNS through the c-ares library, with the system's resolv.conf
//! servers unless `server` names others.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::types::HumanSize;

fn default_each_timeout() -> EachTimeout {
    EachTimeout(Duration::from_millis(2000))
}
fn default_each_tries() -> u32 {
    3
}

/// The c-ares keys; `name`, the common keys and the TTL clamps are decoded beside it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CAresConfig {
    /// Name servers; empty means the system's resolv.conf.
    #[serde(default)]
    pub server: ServerList,
    #[serde(default = "default_each_timeout")]
    pub each_timeout: EachTimeout,
    #[serde(
        default = "default_each_tries",
        deserialize_with = "crate::types::bounds::tries"
    )]
    pub each_tries: u32,
    #[serde(default)]
    pub round_robin: bool,
    /// Need c-ares 1.22 and 1.20; the system library this build links (Debian 12's) is 1.18.
    /// g3 spells the second `udp_max_quires`.
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub max_timeout: (),
    #[serde(
        default,
        alias = "udp_max_quires",
        deserialize_with = "crate::config::de::not_yet"
    )]
    pub udp_max_queries: (),
    #[serde(default)]
    pub socket_send_buffer_size: Option<HumanSize>,
    #[serde(default)]
    pub socket_recv_buffer_size: Option<HumanSize>,
    #[serde(default)]
    pub bind_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub bind_ipv6: Option<Ipv6Addr>,
}

/// c-ares `each_timeout`: a number of milliseconds as g3proxy reads it, or a humanized duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EachTimeout(pub Duration);

impl<'de> Deserialize<'de> for EachTimeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeoutVisitor;
        impl Visitor<'_> for TimeoutVisitor {
            type Value = EachTimeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds, or a duration such as 2s")
            }
            fn visit_u64<E: de::Error>(self, millis: u64) -> Result<EachTimeout, E> {
                let timeout = Duration::from_millis(millis);
                if millis == 0 || timeout > crate::types::MAX_DURATION {
                    return Err(E::custom(format!(
                        "{millis} is out of range: allowed is 1 to {} milliseconds",
                        crate::types::MAX_DURATION.as_millis()
                    )));
                }
                Ok(EachTimeout(timeout))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<EachTimeout, E> {
                crate::types::HumanDuration::parse(text)
                    .map(EachTimeout)
                    .ok_or_else(|| E::custom(format!("invalid duration: {text:?}")))
            }
        }
        deserializer.deserialize_any(TimeoutVisitor)
    }
}

/// Name servers as `ip[:port]`, written as one whitespace-separated string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerList(pub Vec<SocketAddr>);

impl ServerList {
    fn push_text(&mut self, text: &str) -> Result<(), String> {
        for word in text.split_whitespace() {
            let address = word
                .parse::<SocketAddr>()
                .or_else(|_| {
                    word.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("invalid name server {word:?}"))?;
            self.0.push(address);
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ServerList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServersVisitor;
        impl<'de> Visitor<'de> for ServersVisitor {
            type Value = ServerList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("name servers as a string or a list")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ServerList, E> {
                let mut list = ServerList::default();
                list.push_text(text).map_err(E::custom)?;
                Ok(list)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ServerList, A::Error> {
                let mut list = ServerList::default();
                while let Some(text) = seq.next_element::<String>()? {
                    list.push_text(&text).map_err(de::Error::custom)?;
                }
                Ok(list)
            }
        }
        deserializer.deserialize_any(ServersVisitor)
    }
}
