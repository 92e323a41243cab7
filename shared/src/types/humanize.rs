//! Humanized durations (`200ms`, `1h 30m`, `10h`, or a number of seconds) and sizes (`512K`,
//! `1MiB`, or a number of bytes), as g3proxy's configs write them.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanSize(pub u64);

impl HumanDuration {
    pub const fn secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub const fn millis(millis: u64) -> Self {
        HumanDuration(Duration::from_millis(millis))
    }

    /// Reads a duration; `None` for anything that is not one or is over [`MAX_DURATION`].
    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return seconds_to_duration(secs);
        }
        let mut total_secs = 0.0f64;
        let mut rest = text;
        while !rest.is_empty() {
            let number_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number: f64 = rest[..number_end].parse().ok()?;
            rest = rest[number_end..].trim_start();
            let unit_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_end] {
                "ns" | "nsec" => 1e-9,
                "us" | "usec" | "µs" => 1e-6,
                "ms" | "msec" => 1e-3,
                "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
                "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
                "h" | "hr" | "hour" | "hours" => 3600.0,
                "d" | "day" | "days" => 86400.0,
                _ => return None,
            };
            total_secs += number * seconds_per_unit;
            rest = rest[unit_end..].trim_start();
        }
        if text.is_empty() {
            return None;
        }
        seconds_to_duration(total_secs)
    }
}

/// The longest duration any key takes: ten years. Far beyond any timeout an operator means,
/// and small enough that no deadline (`now + duration`, in any clock) can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

fn seconds_to_duration(secs: f64) -> Option<Duration> {
    // Checked in f64 first: `Duration::from_secs_f64` panics on values it cannot hold.
    if !(secs.is_finite() && secs >= 0.0 && secs <= MAX_DURATION.as_secs_f64()) {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

fn duration_error<E: de::Error>(text: &dyn fmt::Debug) -> E {
    E::custom(format!(
        "invalid duration: {text:?} (a duration such as 30, 200ms or 1h 30m, at most 10 years)"
    ))
}

impl HumanSize {
    pub fn parse(text: &str) -> Option<u64> {
        // The user guide writes speeds as `10M/s`; the unit is per second either way.
        let text = text.trim();
        let text = text.strip_suffix("/s").unwrap_or(text).trim();
        let unit_start = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let number: f64 = text[..unit_start].parse().ok()?;
        let unit = text[unit_start..].trim().to_ascii_lowercase();
        let multiplier: u64 = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "ki" | "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mi" | "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gi" | "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "ti" | "tib" => 1 << 40,
            _ => return None,
        };
        let value = number * multiplier as f64;
        (value >= 0.0 && value < u64::MAX as f64).then_some(value as u64)
    }
}

impl fmt::Display for HumanDuration {
    /// The largest unit that states the value exactly: `200ms`, `30s`, `10h`, `3650d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let units: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        match units
            .iter()
            .find(|(size, _)| nanos.is_multiple_of(*size) && nanos > 0)
        {
            Some((size, unit)) => write!(f, "{}{unit}", nanos / size),
            None => f.write_str("0s"),
        }
    }
}

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match units
            .iter()
            .find(|(size, _)| self.0.is_multiple_of(*size) && self.0 > 0)
        {
            Some((size, unit)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}", self.0),
        }
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30, 200ms, 1h 30m")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<HumanDuration, E> {
        Some(Duration::from_secs(secs))
            .filter(|d| *d <= MAX_DURATION)
            .map(HumanDuration)
            .ok_or_else(|| duration_error(&secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<HumanDuration, E> {
        match u64::try_from(secs) {
            Ok(secs) => self.visit_u64(secs),
            Err(_) => Err(E::custom("a duration cannot be negative")),
        }
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<HumanDuration, E> {
        seconds_to_duration(secs)
            .map(HumanDuration)
            .ok_or_else(|| duration_error(&secs))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
        HumanDuration::parse(text)
            .map(HumanDuration)
            .ok_or_else(|| duration_error(&text))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = HumanSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as 4096, 512K, 1MiB")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<HumanSize, E> {
        Ok(HumanSize(bytes))
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<HumanSize, E> {
        u64::try_from(bytes)
            .map(HumanSize)
            .map_err(|_| E::custom("a size cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanSize, E> {
        HumanSize::parse(text)
            .map(HumanSize)
            .ok_or_else(|| E::custom(format!("invalid size: {text:?}")))
    }
}

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |text: &str, millis: Option<u64>| {
            assert_eq!(
                HumanDuration::parse(text).map(|d| d.as_millis() as u64),
                millis,
                "{text}"
            );
        };
        check("200ms", Some(200));
        check("10h", Some(36_000_000));
        check("1h 30m 71s", Some(5_471_000));
        check("5min", Some(300_000));
        check("2.5", Some(2_500));
        check("30", Some(30_000));
        check("", None);
        check("10 parsecs", None);
        check("-1", None);
        check("99999999999999999999h", None);
        check("18446744073709551615s", None);
        check("10000000000000000000s", None);
        check("1e308", None);
        check("3650d", Some(315_360_000_000));
        check("3651d", None);
    }

    #[test]
    fn sizes() {
        let check =
            |text: &str, bytes: Option<u64>| assert_eq!(HumanSize::parse(text), bytes, "{text}");
        check("512K", Some(512_000));
        check("512KiB", Some(524_288));
        check("1M", Some(1_000_000));
        check("10M/s", Some(10_000_000));
        check("1.5Gi", Some(1_610_612_736));
        check("4096", Some(4096));
        check("4 parsecs", None);
    }
}
