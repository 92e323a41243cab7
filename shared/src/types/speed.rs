//! Per-socket speed limits as g3 writes them (`tcp_sock_speed_limit`, `udp_sock_speed_limit`):
//! a plain size is bytes per 1024 ms slice in both directions (`10M`, or the guide's `10M/s`);
//! a map sets the slice (`shift_millis`: 2^shift ms, 0 to 12) and each direction on its own
//! (`upload` / `north`, `download` / `south`, with or without `_bytes`; UDP adds packets).

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::HumanSize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpeedLimit {
    /// The slice is 2^shift_millis milliseconds.
    pub shift_millis: u8,
    /// Bytes per slice from the client toward the upstream; 0 = unlimited.
    pub upload_bytes: u64,
    pub download_bytes: u64,
    pub upload_packets: u64,
    pub download_packets: u64,
}

impl SpeedLimit {
    pub fn slice(&self) -> Duration {
        Duration::from_millis(1 << self.shift_millis)
    }

    /// The stricter of two limits in each direction and measure (0 is no limit), in the
    /// finer of their slices: a user's limit can lower a server's, never lift it.
    pub fn stricter(&self, other: &SpeedLimit) -> SpeedLimit {
        let shift = self.shift_millis.min(other.shift_millis);
        let rescale = |value: u64, from: u8| value >> (from - shift);
        let pick = |a: u64, a_shift: u8, b: u64, b_shift: u8| match (
            rescale(a, a_shift).max(a.min(1)),
            rescale(b, b_shift).max(b.min(1)),
        ) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        let (s, o) = (self.shift_millis, other.shift_millis);
        SpeedLimit {
            shift_millis: shift,
            upload_bytes: pick(self.upload_bytes, s, other.upload_bytes, o),
            download_bytes: pick(self.download_bytes, s, other.download_bytes, o),
            upload_packets: pick(self.upload_packets, s, other.upload_packets, o),
            download_packets: pick(self.download_packets, s, other.download_packets, o),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.upload_bytes == 0
            && self.download_bytes == 0
            && self.upload_packets == 0
            && self.download_packets == 0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeedLimitMap {
    #[serde(default, alias = "shift")]
    shift_millis: Option<u8>,
    #[serde(
        default,
        alias = "upload_bytes",
        alias = "north",
        alias = "north_bytes"
    )]
    upload: Option<HumanSize>,
    #[serde(
        default,
        alias = "download_bytes",
        alias = "south",
        alias = "south_bytes"
    )]
    download: Option<HumanSize>,
    #[serde(default, alias = "north_packets")]
    upload_packets: Option<u64>,
    #[serde(default, alias = "south_packets")]
    download_packets: Option<u64>,
}

impl<'de> Deserialize<'de> for SpeedLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        impl<'de> de::Visitor<'de> for LimitVisitor {
            type Value = SpeedLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size per second such as 10M, or a map of upload and download")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<SpeedLimit, E> {
                Ok(SpeedLimit {
                    shift_millis: 10,
                    upload_bytes: bytes,
                    download_bytes: bytes,
                    ..Default::default()
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SpeedLimit, E> {
                let bytes = HumanSize::parse(text)
                    .ok_or_else(|| E::custom(format!("invalid speed limit: {text:?}")))?;
                self.visit_u64(bytes)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SpeedLimit, A::Error> {
                let raw = SpeedLimitMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let shift_millis = raw.shift_millis.unwrap_or(10);
                if shift_millis > 12 {
                    return Err(de::Error::custom(format!(
                        "shift_millis {shift_millis} is out of range: allowed is 0 to 12"
                    )));
                }
                Ok(SpeedLimit {
                    shift_millis,
                    upload_bytes: raw.upload.map_or(0, |s| s.0),
                    download_bytes: raw.download.map_or(0, |s| s.0),
                    upload_packets: raw.upload_packets.unwrap_or(0),
                    download_packets: raw.download_packets.unwrap_or(0),
                })
            }
        }
        deserializer.deserialize_any(LimitVisitor)
    }
}

/// A speed limit over a whole user (`tcp_all_upload_speed_limit` and kin): a size per
/// second (`100M`, `100M/s`), or a map `{replenish_interval, replenish_bytes,
/// max_burst_bytes}` and for UDP `replenish_packets`, `max_burst_packets`. A burst is one
/// interval's worth unless set; 0 bytes or packets is no limit on that measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalSpeedLimit {
    pub interval: Duration,
    pub bytes: u64,
    pub burst_bytes: u64,
    pub packets: u64,
    pub burst_packets: u64,
}

impl GlobalSpeedLimit {
    /// `(interval, bytes, burst)`.
    pub fn byte_rate(&self) -> (Duration, u64, u64) {
        (self.interval, self.bytes, self.burst_bytes)
    }

    /// `(interval, packets, burst)`.
    pub fn packet_rate(&self) -> (Duration, u64, u64) {
        (self.interval, self.packets, self.burst_packets)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalSpeedLimitMap {
    #[serde(default)]
    replenish_interval: Option<super::HumanDuration>,
    #[serde(default)]
    replenish_bytes: Option<HumanSize>,
    #[serde(default)]
    max_burst_bytes: Option<HumanSize>,
    #[serde(default)]
    replenish_packets: Option<u64>,
    #[serde(default)]
    max_burst_packets: Option<u64>,
}

impl<'de> Deserialize<'de> for GlobalSpeedLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GlobalVisitor;
        impl<'de> de::Visitor<'de> for GlobalVisitor {
            type Value = GlobalSpeedLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size per second such as 100M, or a map of replenish_interval, replenish_bytes and max_burst_bytes")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<GlobalSpeedLimit, E> {
                if bytes == 0 {
                    return Err(E::custom("a speed limit of 0 lets nothing through"));
                }
                Ok(GlobalSpeedLimit {
                    interval: Duration::from_secs(1),
                    bytes,
                    burst_bytes: bytes,
                    packets: 0,
                    burst_packets: 0,
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<GlobalSpeedLimit, E> {
                let bytes = HumanSize::parse(text)
                    .ok_or_else(|| E::custom(format!("invalid speed limit: {text:?}")))?;
                self.visit_u64(bytes)
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<GlobalSpeedLimit, A::Error> {
                let raw =
                    GlobalSpeedLimitMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let interval = raw
                    .replenish_interval
                    .map_or(Duration::from_secs(1), |d| d.0);
                let bytes = raw.replenish_bytes.map_or(0, |b| b.0);
                let packets = raw.replenish_packets.unwrap_or(0);
                if (bytes == 0 && packets == 0) || interval.is_zero() {
                    return Err(de::Error::custom(
                        "a speed limit needs replenish_bytes or replenish_packets above 0",
                    ));
                }
                Ok(GlobalSpeedLimit {
                    interval,
                    bytes,
                    burst_bytes: raw.max_burst_bytes.map_or(bytes, |b| b.0.max(1)),
                    packets,
                    burst_packets: raw.max_burst_packets.unwrap_or(packets).max(1),
                })
            }
        }
        deserializer.deserialize_any(GlobalVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stricter_of_two_limits() {
        let server = SpeedLimit {
            shift_millis: 10,
            upload_bytes: 1000,
            download_bytes: 0,
            ..Default::default()
        };
        let user = SpeedLimit {
            shift_millis: 8,
            upload_bytes: 500,
            download_bytes: 100,
            ..Default::default()
        };
        let both = server.stricter(&user);
        // 1000 a 1024 ms slice is 250 a 256 ms slice, below the user's 500.
        assert_eq!(both.shift_millis, 8);
        assert_eq!(both.upload_bytes, 250);
        assert_eq!(both.download_bytes, 100);
        assert_eq!(both.upload_packets, 0);
    }
}
