//! What a lookup answers: the addresses or why there are none, with how long the answer may
//! be used (g3's expire and vanish times).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use g3proxy_shared::config::resolvers::CacheTtl;
use tokio::time::Instant;

/// Why a lookup has no addresses, in g3's classes (those the resolver metrics count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The name server's answer code.
    Server(ServerError),
    /// Our side of the exchange: the server was not reached or did not answer sensibly.
    Driver(DriverError),
    /// The whole lookup ran past `protective_query_timeout`.
    TimedOut,
    /// The config names no such resolver, or a deny_all one: nothing is looked up.
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError {
    FormErr,
    ServFail,
    NotFound,
    NotImp,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    BadName,
    BadResp,
    ConnRefused,
    Timeout,
    Internal(String),
}

impl ResolveError {
    /// g3's `error_type` in resolve logs.
    pub fn error_type(&self) -> &'static str {
        match self {
            ResolveError::Server(_) => "ServerError",
            ResolveError::Driver(_) => "DriverError",
            ResolveError::TimedOut | ResolveError::Denied => "LocalError",
        }
    }

    /// g3's `error_subtype` in resolve logs.
    pub fn error_subtype(&self) -> &'static str {
        match self {
            ResolveError::Server(ServerError::FormErr) => "FORMERR",
            ResolveError::Server(ServerError::ServFail) => "SERVFAIL",
            ResolveError::Server(ServerError::NotFound) => "NOTFOUND",
            ResolveError::Server(ServerError::NotImp) => "NOTIMP",
            ResolveError::Server(ServerError::Refused) => "REFUSED",
            ResolveError::Driver(DriverError::BadName) => "BadName",
            ResolveError::Driver(DriverError::BadResp) => "BadResp",
            ResolveError::Driver(DriverError::ConnRefused) => "ConnRefused",
            ResolveError::Driver(DriverError::Timeout) => "Timeout",
            ResolveError::Driver(DriverError::Internal(_)) => "InternalError",
            ResolveError::TimedOut => "DriverTimedOut",
            ResolveError::Denied => "NoResolverSet",
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Server(ServerError::FormErr) => {
                f.write_str("server claims the query was malformed")
            }
            ResolveError::Server(ServerError::ServFail) => f.write_str("server failure"),
            ResolveError::Server(ServerError::NotFound) => f.write_str("domain name not found"),
            ResolveError::Server(ServerError::NotImp) => {
                f.write_str("server does not implement the query")
            }
            ResolveError::Server(ServerError::Refused) => f.write_str("server refused the query"),
            ResolveError::Driver(DriverError::BadName) => f.write_str("malformed domain name"),
            ResolveError::Driver(DriverError::BadResp) => f.write_str("malformed DNS reply"),
            ResolveError::Driver(DriverError::ConnRefused) => {
                f.write_str("connection refused by the server")
            }
            ResolveError::Driver(DriverError::Timeout) => {
                f.write_str("timeout while contacting the server")
            }
            ResolveError::Driver(DriverError::Internal(e)) => write!(f, "resolver error: {e}"),
            ResolveError::TimedOut => f.write_str("lookup timed out"),
            ResolveError::Denied => f.write_str("no resolver for it"),
        }
    }
}

/// One lookup's answer for one address family. An empty address list is an answer (the name
/// has no address of that family), not an error.
#[derive(Debug, Clone)]
pub struct Record {
    pub result: Result<Vec<IpAddr>, ResolveError>,
    /// Until when the answer is served from the cache as it is.
    pub expire: Instant,
    /// Until when the answer may still be served while it is asked again (`None`: not
    /// beyond `expire`).
    pub vanish: Option<Instant>,
}

impl Record {
    /// The addresses a name server gave with the TTL of its records, clamped as g3 does: a
    /// TTL beyond both clamps is fresh for `positive_max_ttl` and usable until it ends; a
    /// TTL over twice the minimum is refreshed `positive_min_ttl` before it ends; a short
    /// one is fresh for the minimum. Unlike g3, a stale answer is kept at most
    /// `positive_max_ttl + positive_min_ttl` in all: a name server's huge TTL cannot pin
    /// entries in the cache for years.
    pub fn resolved(ips: Vec<IpAddr>, ttl: u32, clamps: &CacheTtl) -> Self {
        let (min, max) = (clamps.positive_min_ttl, clamps.positive_max_ttl);
        let ttl = ttl.min(max.saturating_add(min).saturating_add(1));
        let (expire_ttl, vanish_ttl) = if ttl > max.saturating_add(min) {
            (max, ttl)
        } else if ttl > min.saturating_mul(2) {
            (ttl - min, ttl)
        } else if ttl > min {
            (min, ttl)
        } else {
            (min, min.saturating_add(1))
        };
        let now = Instant::now();
        Record {
            result: Ok(ips),
            expire: now + secs(expire_ttl),
            vanish: Some(now + secs(vanish_ttl)),
        }
    }

    /// No address (`Ok(empty)`) or an error, kept for `negative_ttl` seconds.
    pub fn negative(result: Result<Vec<IpAddr>, ResolveError>, negative_ttl: u32) -> Self {
        Record {
            result,
            expire: Instant::now() + secs(negative_ttl),
            vanish: None,
        }
    }

    pub fn failed(error: ResolveError, negative_ttl: u32) -> Self {
        Record::negative(Err(error), negative_ttl)
    }

    /// An answer that may replace a stale one: anything the server said, a missing name
    /// included; not a failure to reach it.
    pub fn is_acceptable(&self) -> bool {
        matches!(
            self.result,
            Ok(_) | Err(ResolveError::Server(ServerError::NotFound))
        )
    }

    pub fn has_addresses(&self) -> bool {
        self.result.as_ref().is_ok_and(|ips| !ips.is_empty())
    }
}

fn secs(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes(ttl: u32) -> (u64, u64) {
        let record = Record::resolved(Vec::new(), ttl, &CacheTtl::default());
        let from = Instant::now();
        let round = |at: Instant| (at.duration_since(from).as_secs_f64()).round() as u64;
        (round(record.expire), round(record.vanish.unwrap()))
    }

    #[test]
    fn ttls_are_clamped_as_g3_clamps_them() {
        // Defaults: positive_min_ttl 30, positive_max_ttl 3600.
        assert_eq!(lifetimes(0), (30, 31));
        assert_eq!(lifetimes(45), (30, 45));
        assert_eq!(lifetimes(300), (270, 300));
        assert_eq!(lifetimes(86_400), (3600, 3631));
        assert_eq!(lifetimes(u32::MAX), (3600, 3631));
    }
}
