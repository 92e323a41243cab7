//! The `listen` value of servers: a port, an `ip:port`, an `$ENV_VAR` holding one, or a map
//! with socket options. The supervisor binds from it; workers only ever see the socket.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// g3proxy's default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    pub address: SocketAddr,
    pub backlog: u32,
    pub ipv6_only: Option<bool>,
    /// Listening sockets to open for this address (SO_REUSEPORT), g3's `instance`.
    pub instance: usize,
    /// IP_TRANSPARENT, for a transparent proxy: not a YAML key, the server type decides.
    pub transparent: bool,
}

impl ListenSpec {
    pub fn new(address: SocketAddr) -> Self {
        ListenSpec {
            address,
            backlog: DEFAULT_BACKLOG,
            ipv6_only: None,
            instance: 1,
            transparent: false,
        }
    }

    fn parse_address(text: &str) -> Result<SocketAddr, String> {
        let text = text.trim();
        if let Some(variable) = text.strip_prefix('$') {
            let value = std::env::var(variable)
                .map_err(|_| format!("environment variable {variable} is not set"))?;
            return Self::parse_address(&value);
        }
        if let Ok(port) = text.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        }
        // The user guide writes `[127.0.0.1]:1234`; accept it as g3proxy's docs intend.
        if let Some(rest) = text.strip_prefix('[')
            && let Some((ip, port)) = rest.split_once("]:")
            && let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>())
        {
            return Ok(SocketAddr::new(ip, port));
        }
        text.parse()
            .map_err(|_| format!("invalid listen address: {text:?}"))
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenMap {
    address: String,
    #[serde(default)]
    backlog: Option<u32>,
    #[serde(default)]
    ipv6_only: Option<bool>,
    #[serde(default, deserialize_with = "super::bounds::optional_instances")]
    instance: Option<usize>,
}

struct ListenVisitor;

impl<'de> Visitor<'de> for ListenVisitor {
    type Value = ListenSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port, an ip:port or a map with an address")
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<ListenSpec, E> {
        let port = u16::try_from(port).map_err(|_| E::custom(format!("invalid port {port}")))?;
        Ok(ListenSpec::new(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port,
        )))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ListenSpec, E> {
        ListenSpec::parse_address(text)
            .map(ListenSpec::new)
            .map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListenSpec, A::Error> {
        let raw = ListenMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let address = ListenSpec::parse_address(&raw.address).map_err(de::Error::custom)?;
        let instance = raw.instance.unwrap_or(1);
        if instance == 0 {
            return Err(de::Error::custom("instance must be at least 1"));
        }
        Ok(ListenSpec {
            address,
            backlog: raw.backlog.unwrap_or(DEFAULT_BACKLOG),
            ipv6_only: raw.ipv6_only,
            instance,
            transparent: false,
        })
    }
}

impl<'de> Deserialize<'de> for ListenSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListenVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let check = |text: &str, want: Option<&str>| {
            let got = ListenSpec::parse_address(text).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        };
        check("8080", Some("[::]:8080"));
        check("127.0.0.1:3128", Some("127.0.0.1:3128"));
        check("[::1]:10086", Some("[::1]:10086"));
        check("[127.0.0.1]:1234", Some("127.0.0.1:1234"));
        check("localhost:80", None);
        check("$G3PROXY_TEST_SURELY_UNSET", None);
    }
}
