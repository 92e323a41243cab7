//! The `stat:` section: where StatsD metrics go and how often. `target: {udp: ADDR}` or
//! `{unix: PATH}` (also `target_udp`, `target_unix`, and g3's `backend*` spellings),
//! `prefix` (`g3proxy`), `emit_interval` (200ms; the older `emit_duration` too),
//! `max_segment_size` (the largest datagram: 1400 over UDP, 4096 over a unix socket).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::types::{HumanDuration, HumanSize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatTarget {
    Udp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatConfig {
    pub target: StatTarget,
    pub prefix: String,
    pub emit_interval: HumanDuration,
    pub max_segment_size: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default, alias = "backend")]
    target: Option<TargetMap>,
    #[serde(default, alias = "backend_udp")]
    target_udp: Option<SocketAddr>,
    #[serde(default, alias = "backend_unix")]
    target_unix: Option<PathBuf>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default, alias = "emit_duration")]
    emit_interval: Option<HumanDuration>,
    #[serde(default)]
    max_segment_size: Option<HumanSize>,
    /// g3's client-side cache of lines between emits: ours writes each emit at once.
    #[serde(default)]
    cache_size: Option<HumanSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetMap {
    #[serde(default)]
    udp: Option<SocketAddr>,
    #[serde(default)]
    unix: Option<PathBuf>,
}

impl<'de> Deserialize<'de> for StatConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = Written::deserialize(deserializer)?;
        let _ = written.cache_size;
        let map = written.target.map(|t| (t.udp, t.unix)).unwrap_or_default();
        let target = match (map.0.or(written.target_udp), map.1.or(written.target_unix)) {
            (Some(udp), None) => StatTarget::Udp(udp),
            (None, Some(unix)) => StatTarget::Unix(unix),
            (None, None) => StatTarget::Udp(SocketAddr::from(([127, 0, 0, 1], 8125))),
            (Some(_), Some(_)) => {
                return Err(de::Error::custom("stat has one target: udp or unix"));
            }
        };
        let prefix = written.prefix.unwrap_or_else(|| "g3proxy".into());
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '/'))
        };
        if !prefix.split('.').all(valid) {
            return Err(de::Error::custom(format!(
                "invalid metric prefix {prefix:?}"
            )));
        }
        let max_segment_size = match (written.max_segment_size, &target) {
            (Some(size), _) => size.0.clamp(512, 65_507) as usize,
            (None, StatTarget::Udp(_)) => 1400,
            (None, StatTarget::Unix(_)) => 4096,
        };
        let emit_interval = written.emit_interval.unwrap_or(HumanDuration::millis(200));
        if emit_interval.0 < std::time::Duration::from_millis(10) {
            return Err(de::Error::custom("emit_interval is 10ms at least"));
        }
        Ok(StatConfig {
            target,
            prefix,
            emit_interval,
            max_segment_size,
        })
    }
}
