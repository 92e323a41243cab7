//! `tcp_misc_opts`: socket options g3proxy sets on a server's accepted connections and an
//! escaper's outgoing ones: Nagle, MSS, TTL / hop limit, TOS / traffic class, the congestion
//! control algorithm and the netfilter mark; `udp_misc_opts`, the IP-level ones of those for
//! an escaper's UDP sockets. Unset options are left as the kernel has them.

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
    #[serde(default, alias = "tos", deserialize_with = "octet")]
    pub type_of_service: Option<u8>,
    #[serde(default, deserialize_with = "octet")]
    pub traffic_class: Option<u8>,
    #[serde(default)]
    pub congestion_control: Option<String>,
    #[serde(default, alias = "mark")]
    pub netfilter_mark: Option<u32>,
}

/// A TOS or traffic class byte: a number, or hex as operators write it (`0x20`; YAML 1.2
/// reads that as a string).
fn octet<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    struct OctetVisitor;
    impl serde::de::Visitor<'_> for OctetVisitor {
        type Value = u8;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("0 to 255, or 0x00 to 0xff")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u8, E> {
            u8::try_from(n).map_err(|_| E::custom(format!("{n} is out of range: 0 to 255")))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u8, E> {
            u8::try_from(n).map_err(|_| E::custom(format!("{n} is out of range: 0 to 255")))
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<u8, E> {
            let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                Some(digits) => u8::from_str_radix(digits, 16).ok(),
                None => text.parse().ok(),
            };
            parsed.ok_or_else(|| {
                E::custom(format!("invalid byte {text:?}: 0 to 255, or 0x00 to 0xff"))
            })
        }
    }
    deserializer.deserialize_any(OctetVisitor).map(Some)
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

/// `udp_misc_opts`: TTL / hop limit, TOS / traffic class and the netfilter mark of an
/// escaper's UDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpMiscOpts {
    #[serde(default, alias = "ttl", deserialize_with = "nonzero")]
    pub time_to_live: Option<u8>,
    #[serde(default, deserialize_with = "nonzero")]
    pub hop_limit: Option<u8>,
    #[serde(default, alias = "tos", deserialize_with = "octet")]
    pub type_of_service: Option<u8>,
    #[serde(default, deserialize_with = "octet")]
    pub traffic_class: Option<u8>,
    #[serde(default, alias = "mark")]
    pub netfilter_mark: Option<u32>,
}

/// The smaller of two optional settings, or the one given.
fn smaller<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl TcpMiscOpts {
    pub fn is_empty(&self) -> bool {
        *self == TcpMiscOpts::default()
    }

    /// Its IP-level options, which UDP sockets take too.
    pub fn ip_level(&self) -> UdpMiscOpts {
        UdpMiscOpts {
            time_to_live: self.time_to_live,
            hop_limit: self.hop_limit,
            type_of_service: self.type_of_service,
            traffic_class: self.traffic_class,
            netfilter_mark: self.netfilter_mark,
        }
    }

    /// These options (an escaper's or a server's) with a user's over them, as g3 combines
    /// them: Nagle off if either says so, the smaller MSS, TTL and hop limit; TOS, traffic
    /// class, congestion control and mark from these unless they leave them unset.
    pub fn with_user(&self, user: &TcpMiscOpts) -> TcpMiscOpts {
        TcpMiscOpts {
            no_delay: match (self.no_delay, user.no_delay) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (a, b) => a.or(b),
            },
            max_segment_size: smaller(self.max_segment_size, user.max_segment_size),
            time_to_live: smaller(self.time_to_live, user.time_to_live),
            hop_limit: smaller(self.hop_limit, user.hop_limit),
            type_of_service: self.type_of_service.or(user.type_of_service),
            traffic_class: self.traffic_class.or(user.traffic_class),
            congestion_control: self
                .congestion_control
                .clone()
                .or_else(|| user.congestion_control.clone()),
            netfilter_mark: self.netfilter_mark.or(user.netfilter_mark),
        }
    }
}

/// `tcp_keepalive`: `true` / `false`, an idle time (`60s`: on, probing after that long), or
/// `{enable, idle_time, probe_interval, probe_count}`. Off by default, as in g3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub enable: bool,
    pub idle_time: std::time::Duration,
    pub probe_interval: Option<std::time::Duration>,
    pub probe_count: Option<u32>,
}

impl Default for TcpKeepalive {
    fn default() -> Self {
        TcpKeepalive {
            enable: false,
            idle_time: std::time::Duration::from_secs(60),
            probe_interval: None,
            probe_count: None,
        }
    }
}

impl TcpKeepalive {
    /// An escaper's keepalive with a user's over it, as g3 combines them: on if either is,
    /// probing after the shorter idle time, the smaller probe settings given.
    pub fn with_user(&self, user: &TcpKeepalive) -> TcpKeepalive {
        TcpKeepalive {
            enable: self.enable || user.enable,
            idle_time: self.idle_time.min(user.idle_time),
            probe_interval: smaller(self.probe_interval, user.probe_interval),
            probe_count: smaller(self.probe_count, user.probe_count),
        }
    }
}

impl<'de> Deserialize<'de> for TcpKeepalive {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        use std::fmt;

        use super::HumanDuration;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Keys {
            #[serde(default = "on")]
            enable: bool,
            #[serde(default)]
            idle_time: Option<HumanDuration>,
            #[serde(default)]
            probe_interval: Option<HumanDuration>,
            #[serde(default)]
            probe_count: Option<u32>,
        }
        fn on() -> bool {
            true
        }
        struct FormVisitor;
        impl<'de> Visitor<'de> for FormVisitor {
            type Value = TcpKeepalive;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true / false, an idle time, or a map")
            }
            fn visit_bool<E: de::Error>(self, enable: bool) -> Result<TcpKeepalive, E> {
                Ok(TcpKeepalive {
                    enable,
                    ..TcpKeepalive::default()
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TcpKeepalive, E> {
                let idle_time = HumanDuration::parse(text)
                    .ok_or_else(|| E::custom(format!("invalid idle time {text:?}")))?;
                Ok(TcpKeepalive {
                    enable: true,
                    idle_time,
                    ..TcpKeepalive::default()
                })
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<TcpKeepalive, E> {
                self.visit_str(&format!("{secs}s"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TcpKeepalive, A::Error> {
                let keys = Keys::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let default = TcpKeepalive::default();
                Ok(TcpKeepalive {
                    enable: keys.enable,
                    idle_time: keys.idle_time.map_or(default.idle_time, |d| d.0),
                    probe_interval: keys.probe_interval.map(|d| d.0),
                    probe_count: keys.probe_count,
                })
            }
        }
        deserializer.deserialize_any(FormVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tos_and_traffic_class_take_hex() {
        let opts: UdpMiscOpts =
            serde_json::from_str(r#"{"tos": "0x20", "traffic_class": 184, "ttl": 7}"#).unwrap();
        assert_eq!(
            (opts.type_of_service, opts.traffic_class, opts.time_to_live),
            (Some(32), Some(184), Some(7))
        );
        for bad in [
            r#"{"tos": 300}"#,
            r#"{"tos": "0x1ff"}"#,
            r#"{"tos": "high"}"#,
        ] {
            assert!(serde_json::from_str::<UdpMiscOpts>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_users_options_combine_as_g3_combines_them() {
        let escaper = TcpMiscOpts {
            no_delay: Some(false),
            max_segment_size: Some(1400),
            time_to_live: None,
            type_of_service: Some(8),
            ..Default::default()
        };
        let user = TcpMiscOpts {
            no_delay: Some(true),
            max_segment_size: Some(1200),
            time_to_live: Some(32),
            type_of_service: Some(16),
            netfilter_mark: Some(7),
            ..Default::default()
        };
        let combined = escaper.with_user(&user);
        assert_eq!(combined.no_delay, Some(true));
        assert_eq!(combined.max_segment_size, Some(1200));
        assert_eq!(combined.time_to_live, Some(32));
        // The escaper's own wins where it has one; the user's fills a gap.
        assert_eq!(combined.type_of_service, Some(8));
        assert_eq!(combined.netfilter_mark, Some(7));

        let escaper = TcpKeepalive {
            enable: false,
            idle_time: Duration::from_secs(120),
            probe_interval: Some(Duration::from_secs(10)),
            probe_count: None,
        };
        let user = TcpKeepalive {
            enable: true,
            idle_time: Duration::from_secs(30),
            probe_interval: None,
            probe_count: Some(3),
        };
        let combined = escaper.with_user(&user);
        assert!(combined.enable);
        assert_eq!(combined.idle_time, Duration::from_secs(30));
        assert_eq!(combined.probe_interval, Some(Duration::from_secs(10)));
        assert_eq!(combined.probe_count, Some(3));
    }
}
