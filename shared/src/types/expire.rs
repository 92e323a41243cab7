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

/// The civil date (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// algorithm, the inverse of the one in [`Expire::parse`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// A time as g3's logs write it: RFC 3339 in UTC with microseconds
/// (`2026-11-30T10:20:30.123456Z`).
pub fn rfc3339_micros(at: std::time::SystemTime) -> String {
    Rfc3339Micros(at).to_string()
}

/// The same written where it is displayed, without a string of its own: a log event's
/// times are written into the event's buffer.
pub struct Rfc3339Micros(pub std::time::SystemTime);

impl std::fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rest = secs.rem_euclid(86_400);
        // `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, digit by digit (the formatting machinery costs
        // more than the rest of an event's fields).
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year.clamp(0, 9999) as u64);
        put(5, 2, month as u64);
        put(8, 2, day as u64);
        put(11, 2, (rest / 3600) as u64);
        put(14, 2, (rest % 3600 / 60) as u64);
        put(17, 2, (rest % 60) as u64);
        put(20, 6, u64::from(since.subsec_micros()));
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// A time as RFC 3164 writes it, in UTC: `Dec  1 10:20:30`.
pub fn rfc3164_stamp(at: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (_, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    format!(
        "{} {day:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn times_are_written_as_they_are_read() {
        let at = UNIX_EPOCH + Duration::from_micros(1_638_354_030_123_456);
        assert_eq!(rfc3339_micros(at), "2021-12-01T10:20:30.123456Z");
        assert_eq!(rfc3164_stamp(at), "Dec  1 10:20:30");
        let parsed = Expire::parse("2021-12-01T10:20:30Z").unwrap();
        assert_eq!(parsed.unix_secs, 1_638_354_030);
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
