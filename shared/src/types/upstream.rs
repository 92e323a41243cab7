//! Upstream addresses as configs write them: `host:port` with the port optional (each module
//! has its own default: 3128 for an HTTP proxy, 1080 for SOCKS), alone or in a list whose
//! entries may carry a weight (`{addr: …, weight: 2}`); and how one is picked per connection.
//! A password is a [`Secret`]: it prints as `***` wherever a config is shown.

use std::fmt;

use g3proxy_proto::{Host, HostPort};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// `host[:port]` from a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    pub host: Host,
    pub port: Option<u16>,
}

impl UpstreamAddr {
    pub fn parse(text: &str) -> Result<UpstreamAddr, String> {
        let invalid = || format!("invalid address {text:?}: expected host:port");
        if let Some(with_port) = HostPort::parse_authority(text, None) {
            return Ok(UpstreamAddr {
                host: with_port.host,
                port: Some(with_port.port),
            });
        }
        // A bare IPv6 address has colons but no port.
        if let Ok(ip) = text.parse() {
            return Ok(UpstreamAddr {
                host: Host::Ip(ip),
                port: None,
            });
        }
        let host = Host::parse_uri_host(text).ok_or_else(invalid)?;
        Ok(UpstreamAddr { host, port: None })
    }

    pub fn with_default_port(&self, default: u16) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port: self.port.unwrap_or(default),
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        UpstreamAddr::parse(&text).map_err(de::Error::custom)
    }
}

/// One entry of an address list.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedAddr {
    pub addr: UpstreamAddr,
    pub weight: f64,
}

struct WeightedVisitor;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedMap {
    addr: String,
    #[serde(default = "default_weight")]
    weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

impl<'de> Visitor<'de> for WeightedVisitor {
    type Value = WeightedAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("host:port, or a map with addr and weight")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<WeightedAddr, E> {
        Ok(WeightedAddr {
            addr: UpstreamAddr::parse(text).map_err(E::custom)?,
            weight: 1.0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WeightedAddr, A::Error> {
        let raw = WeightedMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
        if !(raw.weight.is_finite() && raw.weight > 0.0 && raw.weight <= 1e6) {
            return Err(de::Error::custom(format!(
                "weight {} is out of range: allowed is above 0 up to 1000000",
                raw.weight
            )));
        }
        Ok(WeightedAddr {
            addr: UpstreamAddr::parse(&raw.addr).map_err(de::Error::custom)?,
            weight: raw.weight,
        })
    }
}

impl<'de> Deserialize<'de> for WeightedAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WeightedVisitor)
    }
}

/// How one entry of a list is picked per connection (g3's selective pick policies). The
/// hashing ones (ketama, rendezvous, jump hash) pick by a key the module hashes on, so the same
/// client keeps its entry while the list stays the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PickPolicy {
    /// Random, in proportion to the weights.
    #[default]
    Random,
    /// The heaviest entry (the first of equals), the others in turn when it fails.
    Serial,
    /// In turn, each entry as often as its weight says.
    RoundRobin,
    /// Consistent hashing on a ring, points in proportion to the weights.
    Ketama,
    /// Highest random weight: each entry scores the key, weighted.
    Rendezvous,
    /// Lamping and Veach's jump consistent hash (weights not used).
    JumpHash,
}

impl<'de> Deserialize<'de> for PickPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "random" => Ok(PickPolicy::Random),
            "serial" | "sequence" => Ok(PickPolicy::Serial),
            "rr" | "round_robin" | "roundrobin" => Ok(PickPolicy::RoundRobin),
            "ketama" => Ok(PickPolicy::Ketama),
            "rendezvous" => Ok(PickPolicy::Rendezvous),
            "jump" | "jump_hash" | "jumphash" => Ok(PickPolicy::JumpHash),
            _ => Err(de::Error::custom(format!(
                "unknown pick policy {text}: expected random, serial, rr, ketama, rendezvous or jump_hash"
            ))),
        }
    }
}

/// A password or key from a config: compared and used, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_ports() {
        let check = |text: &str, want: Option<&str>| {
            let got = UpstreamAddr::parse(text)
                .ok()
                .map(|a| a.with_default_port(3128).to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        };
        check("127.0.0.1:8080", Some("127.0.0.1:8080"));
        check("127.0.0.1", Some("127.0.0.1:3128"));
        check("proxy.example.net", Some("proxy.example.net:3128"));
        check("proxy.example.net:1", Some("proxy.example.net:1"));
        check("[::1]:81", Some("[::1]:81"));
        check("::1", Some("[::1]:3128"));
        check("a b:1", None);
        check("", None);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
    }
}
