//! Rate limit quotas as g3 writes them (`request_rate_limit`, `connection_rate_limit`): a
//! number per second (`1000`, `"1000/s"`), per minute (`"60/m"`), per hour (`"3600/h"`), or
//! a map `{rate, replenish_interval, max_burst}`. The burst is the rate's count unless set.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::HumanDuration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// `count` events per `interval`.
    pub count: u32,
    pub interval: Duration,
    /// How many may come at once after a quiet time.
    pub burst: u32,
}

impl RateQuota {
    /// The time one event uses up of the quota.
    pub fn emission_interval(&self) -> Duration {
        self.interval / self.count.max(1)
    }

    fn parse(text: &str) -> Result<RateQuota, String> {
        let text = text.trim();
        let (count, unit) = match text.split_once('/') {
            Some((count, unit)) => (count.trim(), unit.trim()),
            None => (text, "s"),
        };
        let interval = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(format!("invalid rate {text:?}: N, N/s, N/m or N/h")),
        };
        let count: u32 = count
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid rate {text:?}: the count must be 1 or more"))?;
        Ok(RateQuota {
            count,
            interval,
            burst: count,
        })
    }
}

impl<'de> Deserialize<'de> for RateQuota {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuotaVisitor;
        impl<'de> Visitor<'de> for QuotaVisitor {
            type Value = RateQuota;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate: N, N/s, N/m, N/h or {rate, replenish_interval, max_burst}")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RateQuota, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RateQuota, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RateQuota, E> {
                RateQuota::parse(text).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RateQuota, A::Error> {
                let (mut rate, mut interval, mut burst) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "rate" => rate = Some(map.next_value::<String>()?),
                        "replenish_interval" => {
                            interval = Some(map.next_value::<HumanDuration>()?.0)
                        }
                        "max_burst" => burst = Some(map.next_value::<u32>()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "invalid key {other} in a rate"
                            )));
                        }
                    }
                }
                let mut quota = match (rate, interval) {
                    (Some(rate), None) => RateQuota::parse(&rate).map_err(de::Error::custom)?,
                    // `rate` events every `replenish_interval`.
                    (rate, Some(interval)) => {
                        let count = match rate {
                            Some(rate) => rate.trim().parse().map_err(|_| {
                                de::Error::custom(format!(
                                    "invalid rate {rate:?} with replenish_interval"
                                ))
                            })?,
                            None => 1,
                        };
                        RateQuota {
                            count,
                            interval,
                            burst: count,
                        }
                    }
                    (None, None) => return Err(de::Error::custom("a rate needs rate")),
                };
                if quota.count == 0 || quota.interval.is_zero() {
                    return Err(de::Error::custom("a rate must allow something"));
                }
                if let Some(burst) = burst {
                    quota.burst = burst.max(1);
                }
                Ok(quota)
            }
        }
        deserializer.deserialize_any(QuotaVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let per_second = RateQuota::parse("1000").unwrap();
        assert_eq!(per_second.emission_interval(), Duration::from_millis(1));
        assert_eq!(per_second.burst, 1000);
        assert_eq!(
            RateQuota::parse("60/m").unwrap().emission_interval(),
            Duration::from_secs(1)
        );
        assert!(RateQuota::parse("0/s").is_err());
        assert!(RateQuota::parse("5/d").is_err());
    }
}
