//! Config of `type: hickory`: DNS through the hickory client, over UDP (TCP when an answer is
//! truncated), DNS over TLS, over HTTPS (HTTP/2 or HTTP/3) or over QUIC.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::config::tls::TlsClientConfig;
use crate::types::HumanDuration;

/// The hickory keys; `name`, the common keys and the TTL clamps are decoded beside it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HickoryConfig {
    /// Name server addresses, tried in order, a second apart, the first answer winning.
    pub server: IpList,
    /// Defaults to the protocol's port: 53, 853 for DoT and DoQ, 443 for DoH and DoH3.
    #[serde(default)]
    pub server_port: Option<u16>,
    #[serde(default, alias = "encrypt")]
    pub encryption: Option<DnsEncryption>,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub connect_timeout: HumanDuration,
    /// How long one request waits for its answer.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub request_timeout: HumanDuration,
    /// How long a lookup waits for the last server it asked.
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub each_timeout: HumanDuration,
    /// Requests to one server before it counts as failed for this lookup.
    #[serde(
        default = "default_each_tries",
        alias = "retry_attempts",
        deserialize_with = "crate::types::bounds::tries"
    )]
    pub each_tries: u32,
    #[serde(default)]
    pub bind_ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub bind_interface: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub tcp_misc_opts: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub udp_misc_opts: (),
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_each_tries() -> u32 {
    2
}

impl HickoryConfig {
    pub fn port(&self) -> u16 {
        self.server_port
            .unwrap_or(match self.encryption.as_ref().map(|e| e.protocol) {
                None => 53,
                Some(DnsProtocol::Tls | DnsProtocol::Quic) => 853,
                Some(DnsProtocol::Https | DnsProtocol::H3) => 443,
            })
    }
}

/// Addresses written as one whitespace-separated string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpList(pub Vec<IpAddr>);

impl<'de> Deserialize<'de> for IpList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn push<E: de::Error>(list: &mut IpList, text: &str) -> Result<(), E> {
            for word in text.split_whitespace() {
                let ip = word.parse().map_err(|_| {
                    E::custom(format!(
                        "invalid name server address {word:?}: an IP address"
                    ))
                })?;
                list.0.push(ip);
            }
            Ok(())
        }
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = IpList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("IP addresses as a string or a list")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<IpList, E> {
                let mut list = IpList::default();
                push(&mut list, text)?;
                match list.0.is_empty() {
                    true => Err(E::custom("at least one name server is needed")),
                    false => Ok(list),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IpList, A::Error> {
                let mut list = IpList::default();
                while let Some(text) = seq.next_element::<String>()? {
                    push(&mut list, &text)?;
                }
                match list.0.is_empty() {
                    true => Err(de::Error::custom("at least one name server is needed")),
                    false => Ok(list),
                }
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsProtocol {
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484), on HTTP/2.
    Https,
    /// DNS over HTTPS on HTTP/3.
    H3,
    /// DNS over QUIC (RFC 9250).
    Quic,
}

impl<'de> Deserialize<'de> for DnsProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // g3's spellings: any case, `-` for `_`.
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "dot" | "tls" | "dns_over_tls" | "dnsovertls" => Ok(DnsProtocol::Tls),
            "doh" | "https" | "h2" | "dns_over_https" | "dnsoverhttps" => Ok(DnsProtocol::Https),
            "h3" | "http/3" | "dns_over_http/3" | "dnsoverhttp/3" | "doh3" => Ok(DnsProtocol::H3),
            "quic" | "dns_over_quic" | "dnsoverquic" | "doq" => Ok(DnsProtocol::Quic),
            other => Err(de::Error::custom(format!(
                "unknown DNS encryption protocol {other}: dot, doh, doh3 or doq"
            ))),
        }
    }
}

/// `encryption`: a map `{protocol, tls_name, tls_client}`, or just the server's TLS name
/// (DNS over TLS).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsEncryption {
    pub protocol: DnsProtocol,
    pub tls_name: String,
    /// `None`: the system's CA certificates.
    pub tls_client: Option<TlsClientConfig>,
}

impl<'de> Deserialize<'de> for DnsEncryption {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Keys {
            #[serde(default)]
            protocol: Option<DnsProtocol>,
            tls_name: String,
            #[serde(default)]
            tls_client: Option<TlsClientConfig>,
        }
        struct FormVisitor;
        impl<'de> Visitor<'de> for FormVisitor {
            type Value = DnsEncryption;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS name, or a map with tls_name, protocol and tls_client")
            }
            fn visit_str<E: de::Error>(self, tls_name: &str) -> Result<DnsEncryption, E> {
                Ok(DnsEncryption {
                    protocol: DnsProtocol::Tls,
                    tls_name: tls_name.to_string(),
                    tls_client: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DnsEncryption, A::Error> {
                let keys = Keys::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(DnsEncryption {
                    protocol: keys.protocol.unwrap_or(DnsProtocol::Tls),
                    tls_name: keys.tls_name,
                    tls_client: keys.tls_client,
                })
            }
        }
        deserializer.deserialize_any(FormVisitor)
    }
}
