//! `transmute_udp_echo_ip` (socks_proxy) and `transmute_udp_peer_ip` (proxy_socks5): a map
//! that rewrites the IP of a SOCKS5 UDP relay address, for addresses that differ on the
//! two sides of a NAT. `true` is the empty map, `false` no map.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::de::{self, Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransmuteIp(pub Option<BTreeMap<IpAddr, IpAddr>>);

impl TransmuteIp {
    /// A server's reply for a socket bound to `bound`: the mapped IP, else (with a map) the
    /// unspecified address, which tells the client to use the proxy's own.
    pub fn announce(&self, bound: IpAddr) -> IpAddr {
        match &self.0 {
            None => bound,
            Some(map) => map.get(&bound).copied().unwrap_or(match bound {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            }),
        }
    }

    /// Where a client sends to, for a relay IP `announced` by a next hop reached at
    /// `next_hop`: the mapped IP, else (with a map) the next hop's; without a map the
    /// announced one, unless it is unspecified.
    pub fn relay_ip(&self, announced: IpAddr, next_hop: IpAddr) -> IpAddr {
        match &self.0 {
            Some(map) => map.get(&announced).copied().unwrap_or(next_hop),
            None if announced.is_unspecified() => next_hop,
            None => announced,
        }
    }
}

impl<'de> Deserialize<'de> for TransmuteIp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TransmuteVisitor;
        impl<'de> de::Visitor<'de> for TransmuteVisitor {
            type Value = TransmuteIp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a map of IP to IP")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<TransmuteIp, E> {
                Ok(TransmuteIp(on.then(BTreeMap::new)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<TransmuteIp, A::Error> {
                let mut ips = BTreeMap::new();
                while let Some((from, to)) = map.next_entry::<String, String>()? {
                    let parse = |text: &str| {
                        text.trim()
                            .parse::<IpAddr>()
                            .map_err(|_| de::Error::custom(format!("invalid IP {text:?}")))
                    };
                    ips.insert(parse(&from)?, parse(&to)?);
                }
                Ok(TransmuteIp(Some(ips)))
            }
        }
        deserializer.deserialize_any(TransmuteVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let hop = ip("192.0.2.1");
        let none = TransmuteIp(None);
        assert_eq!(none.relay_ip(ip("0.0.0.0"), hop), hop);
        assert_eq!(none.relay_ip(ip("10.0.0.5"), hop), ip("10.0.0.5"));
        let map = TransmuteIp(Some(BTreeMap::from([(ip("10.0.0.5"), ip("198.51.100.7"))])));
        assert_eq!(map.relay_ip(ip("10.0.0.5"), hop), ip("198.51.100.7"));
        assert_eq!(map.relay_ip(ip("10.0.0.6"), hop), hop);
        assert_eq!(map.announce(ip("10.0.0.5")), ip("198.51.100.7"));
        assert_eq!(map.announce(ip("10.0.0.6")), ip("0.0.0.0"));
    }
}
