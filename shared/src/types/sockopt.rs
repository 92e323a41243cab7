//! `tcp_misc_opts`: socket options g3proxy sets on a server's accepted connections: Nagle,
//! MSS, TTL / hop limit, TOS / traffic class, the congestion control algorithm and the
//! netfilter mark. Unset options are left as the kernel has them. (Escapers take the same
//! key for their outgoing connections once they apply it.)

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpMiscOpts {
    #[serde(default)]
    pub no_delay: Option<bool>,
    #[serde(default, alias = "mss")]
    pub max_segment_size: Option<u32>,
    #[serde(default, alias = "ttl", deserialize_with = "nonzero")]
    pub time_to_live: Option<u8>,
    #[serde(default, deserialize_with = "nonzero")]
    pub hop_limit: Option<u8>,
    #[serde(default, alias = "tos")]
    pub type_of_service: Option<u8>,
    #[serde(default)]
    pub traffic_class: Option<u8>,
    #[serde(default)]
    pub congestion_control: Option<String>,
    #[serde(default, alias = "mark")]
    pub netfilter_mark: Option<u32>,
}

/// A TTL or hop limit: 1 to 255 (0 would not leave the host).
fn nonzero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    match u8::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom(
            "0 is out of range: allowed is 1 to 255",
        )),
        n => Ok(Some(n)),
    }
}

impl TcpMiscOpts {
    pub fn is_empty(&self) -> bool {
        *self == TcpMiscOpts::default()
    }
}
