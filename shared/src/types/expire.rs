//! Times written in RFC 3339, as g3 writes `expire`: parsed without a date crate (the civil
//! date to days is a few lines), to whole Unix seconds.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// An `expire` time (users, published float binds and peers): RFC 3339 with an offset
/// (`2030-01-01T00:00:00Z`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Expire {
    pub unix_secs: i64,
}

impl fmt::Debug for Expire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expire({})", self.unix_secs)
    }
}

impl Expire {
    pub fn parse(text: &str) -> Option<Expire> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
            return None;
        }
        if !matches!(bytes[10], b'T' | b't' | b' ') || bytes[16] != b':' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = text.get(range)?;
            digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse().ok())?
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        if second > 60 {
            return None;
        }
        let mut rest = &text[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = &fraction[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let (h, m) = rest[1..].split_once(':')?;
                if h.len() != 2 || m.len() != 2 {
                    return None;
                }
                let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
                if h > 23 || m > 59 {
                    return None;
                }
                sign * (h * 3600 + m * 60)
            }
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let shifted_month = (month + 9) % 12;
        let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        Some(Expire {
            unix_secs: days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        })
    }
}

impl<'de> Deserialize<'de> for Expire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Expire::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid expire {text:?}: an RFC 3339 time with its offset, such as 2030-01-01T00:00:00Z"
            ))
        })
    }
}

impl Expire {
    /// Whether the time is past, `guard` seconds early.
    pub fn is_past(&self, guard: u64) -> bool {
        let now = super::unix_secs(std::time::SystemTime::now()) as i64;
        self.unix_secs.saturating_sub(guard as i64) <= now
    }
}
