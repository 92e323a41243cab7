//! Value types shared by config and runtime: humanized durations and sizes, listen specs,
//! network ACLs and other ACL rules, upstream address lists, user tokens.

pub mod acl;
pub mod bounds;
mod crypt;
mod expire;
mod humanize;
mod listen;
mod network_acl;
mod rate;
mod sockopt;
mod speed;
mod token;
mod transmute;
mod upstream;

pub use expire::{Expire, Rfc3339Micros, rfc3164_stamp, rfc3339_micros};
pub use humanize::{HumanDuration, HumanSize, MAX_DURATION};
pub use listen::ListenSpec;
pub use network_acl::{AclAction, IpNetwork, NetworkAcl};
pub use rate::RateQuota;
pub use sockopt::{TcpKeepalive, TcpMiscOpts, UdpMiscOpts};
pub use speed::{GlobalSpeedLimit, SpeedLimit};
pub use token::{Token, constant_time_eq, hex, password_digest};
pub use transmute::TransmuteIp;
pub use upstream::{PickPolicy, Secret, UpstreamAddr, WeightedAddr};

/// Seconds since the Unix epoch: how deadlines travel between processes.
pub fn unix_secs(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `extra_metrics_tags`: names and values in the characters g3 allows in a tag (letters and
/// digits of any script, `-_./`; a value may be empty), so that no tag breaks a StatsD line
/// or poses as another.
pub fn metric_tags<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    use serde::Deserialize;
    let tags = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
    let safe = |text: &str| text.chars().all(crate::statsd::tag_char);
    for (name, value) in &tags {
        if name.is_empty() || !safe(name) || !safe(value) {
            return Err(serde::de::Error::custom(format!(
                "metric tag {name:?}: {value:?}: names and values take letters, digits and -_./ only (and a name is not empty)"
            )));
        }
    }
    Ok(tags)
}
