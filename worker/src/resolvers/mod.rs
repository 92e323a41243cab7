//! Resolvers: turn a domain into addresses for escapers. One file per config `type` for the
//! part that asks (the driver); the cache in front of every driver is here, so that every
//! type keeps answers alike:
//! - a fresh answer is served as it is (`cache`);
//! - past its fresh time and within its TTL, it is served while it is asked again in the
//!   background (`trash`, g3's word), and kept if that new lookup fails;
//! - lookups of the same name and family in flight are merged into one (`query` for the first
//!   caller, `cache` for the others);
//! - a lookup is cut at `protective_query_timeout` and its failure kept for the negative TTL.

mod c_ares;
mod fail_over;
mod hickory;
mod record;

pub use record::{Record, ResolveError};

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use g3proxy_shared::config::escapers::QueryStrategy;
use g3proxy_shared::config::resolvers::{DnsProtocol, ResolverConfig, ResolverType};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::TaskError;
use crate::log::{Event, Logger};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// As g3 tags resolver metrics (`rr_type`).
    pub fn rr_type(self) -> &'static str {
        match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        }
    }
}

/// Where an answer came from (g3's `rr_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    /// Stale, served while it is asked again.
    Trash,
    Query,
}

impl Source {
    /// As g3's resolve logs name it (`rr_source`).
    fn name(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Trash => "trash",
            Source::Query => "query",
        }
    }
}

enum Driver {
    CAres(c_ares::CAresDriver),
    Hickory(hickory::HickoryDriver),
    FailOver(fail_over::FailOverDriver),
    /// A deny_all resolver, or the stand-in for one the config names but lacks.
    DenyAll,
}

pub struct Resolver {
    pub name: String,
    /// As g3 names the type in resolve logs (`c-ares`, `hickory`, ...).
    type_name: &'static str,
    /// Where failed lookups are logged (the `log` section's `resolve` driver), and the
    /// fields of its type that every such event carries (g3's: the servers asked, ...).
    log: Option<Arc<Logger>>,
    log_fields: Vec<(&'static str, String)>,
    driver: Driver,
    protective_timeout: Duration,
    negative_ttl: u32,
    cache: Mutex<Cache>,
    pub stats: [LookupStats; 2],
}

/// Counts per family, with g3's metric names (`resolver.query.*`).
#[derive(Default)]
pub struct LookupStats {
    pub total: AtomicU64,
    pub cached: AtomicU64,
    pub trashed: AtomicU64,
    pub driver_total: AtomicU64,
    pub driver_timeout: AtomicU64,
    pub driver_refused: AtomicU64,
    pub driver_malformed: AtomicU64,
    pub server_refused: AtomicU64,
    pub server_malformed: AtomicU64,
    pub server_not_found: AtomicU64,
    pub server_serv_fail: AtomicU64,
}

impl LookupStats {
    /// g3's metric names, in the order of [`Self::snapshot`].
    pub const METRICS: [&'static str; 11] = [
        "resolver.query.total",
        "resolver.query.cached",
        "resolver.query.trashed",
        "resolver.query.driver.total",
        "resolver.query.driver.timeout",
        "resolver.query.driver.refused",
        "resolver.query.driver.malformed",
        "resolver.query.server.refused",
        "resolver.query.server.malformed",
        "resolver.query.server.not_found",
        "resolver.query.server.serv_fail",
    ];

    pub fn snapshot(&self) -> [u64; 11] {
        [
            &self.total,
            &self.cached,
            &self.trashed,
            &self.driver_total,
            &self.driver_timeout,
            &self.driver_refused,
            &self.driver_malformed,
            &self.server_refused,
            &self.server_malformed,
            &self.server_not_found,
            &self.server_serv_fail,
        ]
        .map(|counter| counter.load(Ordering::Relaxed))
    }
}

type Pending = watch::Receiver<Option<Arc<Record>>>;

#[derive(Default)]
struct Slot {
    record: Option<Arc<Record>>,
    pending: Option<Pending>,
}

#[derive(Default)]
struct Cache {
    slots: [HashMap<Box<str>, Slot>; 2],
    /// Entries past use are dropped when the table has grown to this many.
    sweep_at: usize,
}

const FIRST_SWEEP_AT: usize = 1024;
/// Names per family a cache keeps at most.
const MAX_NAMES: usize = 1 << 16;

impl Resolver {
    /// The resolver called `name`, or a deny-all stand-in when the config lacks it.
    pub fn named(resolvers: &HashMap<String, Arc<Resolver>>, name: &str) -> Arc<Resolver> {
        resolvers.get(name).cloned().unwrap_or_else(|| {
            let timeout = Duration::from_secs(60);
            Arc::new(Resolver::new(
                name,
                "deny-all",
                Driver::DenyAll,
                timeout,
                30,
            ))
        })
    }

    /// Builds `config`; `built` has the resolvers it refers to (the config lists them first).
    pub fn build(
        config: &ResolverConfig,
        built: &HashMap<String, Arc<Resolver>>,
        log: Option<Arc<Logger>>,
    ) -> anyhow::Result<Resolver> {
        let ttl = config.ttl;
        let mut negative_ttl = ttl.negative_min_ttl;
        let driver = match &config.resolver_type {
            ResolverType::CAres(c) => Driver::CAres(c_ares::CAresDriver::build(c, ttl)?),
            ResolverType::Hickory(h) => Driver::Hickory(hickory::HickoryDriver::build(h, ttl)?),
            ResolverType::FailOver(f) => {
                negative_ttl = f.negative_ttl;
                Driver::FailOver(fail_over::FailOverDriver::build(
                    f,
                    Resolver::named(built, &f.primary),
                    Resolver::named(built, &f.standby),
                ))
            }
            ResolverType::DenyAll => Driver::DenyAll,
        };
        let timeout = config.common.protective_query_timeout.0;
        let type_name = config.type_name();
        let mut resolver = Resolver::new(config.name(), type_name, driver, timeout, negative_ttl);
        resolver.log = log.map(|log| log.named(format!("lr-{}", config.name())));
        resolver.log_fields = log_fields(&config.resolver_type);
        Ok(resolver)
    }

    fn new(
        name: &str,
        type_name: &'static str,
        driver: Driver,
        protective_timeout: Duration,
        negative_ttl: u32,
    ) -> Self {
        Resolver {
            name: name.to_string(),
            type_name,
            log: None,
            log_fields: Vec::new(),
            driver,
            protective_timeout,
            negative_ttl,
            cache: Mutex::new(Cache {
                sweep_at: FIRST_SWEEP_AT,
                ..Default::default()
            }),
            stats: Default::default(),
        }
    }

    pub fn stats(&self, family: Family) -> &LookupStats {
        &self.stats[family as usize]
    }

    /// The answer for `domain` in `family`, from the cache or a lookup (merged with any other
    /// lookup of it in flight). A failure is resolve-logged for each asker, wherever it came
    /// from, as g3 does.
    pub async fn lookup(self: &Arc<Self>, domain: &str, family: Family) -> (Arc<Record>, Source) {
        let started = Instant::now();
        let (record, source) = self.cached_or_asked(domain, family).await;
        self.log_failure(domain, family, &record, source, started);
        (record, source)
    }

    async fn cached_or_asked(
        self: &Arc<Self>,
        domain: &str,
        family: Family,
    ) -> (Arc<Record>, Source) {
        let stats = self.stats(family);
        stats.total.fetch_add(1, Ordering::Relaxed);
        let lowered;
        let domain = match domain.bytes().any(|b| b.is_ascii_uppercase()) {
            true => {
                lowered = domain.to_ascii_lowercase();
                lowered.as_str()
            }
            false => domain,
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let now = Instant::now();
        let mut pending = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let slots = &mut cache.slots[family as usize];
            let slot = match slots.get_mut(domain) {
                Some(slot) => slot,
                None => slots.entry(domain.into()).or_default(),
            };
            if let Some(record) = &slot.record {
                if now < record.expire {
                    stats.cached.fetch_add(1, Ordering::Relaxed);
                    return (record.clone(), Source::Cache);
                }
                if record.vanish.is_some_and(|vanish| now < vanish) {
                    stats.trashed.fetch_add(1, Ordering::Relaxed);
                    let record = record.clone();
                    if slot.pending.is_none() {
                        slot.pending = Some(self.start_lookup(domain, family));
                    }
                    return (record, Source::Trash);
                }
            }
            match &slot.pending {
                Some(pending) => {
                    stats.cached.fetch_add(1, Ordering::Relaxed);
                    pending.clone()
                }
                None => {
                    let pending = self.start_lookup(domain, family);
                    slot.pending = Some(pending.clone());
                    pending
                }
            }
        };
        match pending.wait_for(Option::is_some).await {
            Ok(record) => (record.clone().unwrap_or_else(|| self.lost()), Source::Query),
            Err(_) => (self.lost(), Source::Query),
        }
    }

    /// What waiters get if the lookup task is gone without an answer (its runtime stopped).
    fn lost(&self) -> Arc<Record> {
        Arc::new(Record::failed(ResolveError::TimedOut, 0))
    }

    /// Starts the driver's lookup in a task of its own, so that it completes (and fills the
    /// cache) even when the task that asked first is gone.
    fn start_lookup(self: &Arc<Self>, domain: &str, family: Family) -> Pending {
        let (sender, receiver) = watch::channel(None);
        let resolver = self.clone();
        let domain = domain.to_string();
        self.stats(family)
            .driver_total
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let asked = tokio::time::timeout(
                resolver.protective_timeout,
                resolver.driver_lookup(&domain, family),
            );
            let record = asked
                .await
                .unwrap_or_else(|_| Record::failed(ResolveError::TimedOut, resolver.negative_ttl));
            let record = resolver.store(&domain, family, record);
            let _ = sender.send(Some(record));
        });
        receiver
    }

    async fn driver_lookup(&self, domain: &str, family: Family) -> Record {
        match &self.driver {
            Driver::CAres(driver) => driver.query(domain, family).await,
            Driver::Hickory(driver) => driver.query(domain, family).await,
            // Boxed: it looks up through other resolvers, whose lookups may come back here.
            Driver::FailOver(driver) => Box::pin(driver.query(domain, family)).await,
            Driver::DenyAll => Record::failed(ResolveError::Denied, self.negative_ttl),
        }
    }

    /// Keeps a lookup's answer and returns what its waiters get: the new answer, or the
    /// stale one when the lookup failed to reach any server.
    fn store(&self, domain: &str, family: Family, record: Record) -> Arc<Record> {
        self.count_failure(family, &record);
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let slots = &mut cache.slots[family as usize];
        let slot = slots.entry(domain.into()).or_default();
        slot.pending = None;
        if !record.is_acceptable()
            && let Some(stale) = &slot.record
            && stale.vanish.is_some_and(|vanish| now < vanish)
        {
            return stale.clone();
        }
        let record = Arc::new(record);
        slot.record = Some(record.clone());
        let len = slots.len();
        if len >= cache.sweep_at {
            cache.sweep(now);
        }
        record
    }

    /// A resolve log event for a lookup that failed (g3 logs failures only).
    fn log_failure(
        &self,
        domain: &str,
        family: Family,
        record: &Record,
        source: Source,
        started: Instant,
    ) {
        let (Some(log), Err(error)) = (&self.log, &record.result) else {
            return;
        };
        let mut event = Event::new();
        event
            .str("resolver_type", self.type_name)
            .str("resolver_name", &self.name);
        for (key, value) in &self.log_fields {
            event.str(key, value);
        }
        event
            .str("query_type", family.rr_type())
            .elapsed("duration", started.elapsed())
            .str("rr_source", source.name())
            .str("error_type", error.error_type())
            .str("error_subtype", error.error_subtype())
            .str("domain", domain);
        event.message = error.to_string();
        log.log(event);
    }

    fn count_failure(&self, family: Family, record: &Record) {
        use record::{DriverError as D, ServerError as S};
        let stats = self.stats(family);
        let counter = match &record.result {
            Ok(_) => return,
            Err(ResolveError::TimedOut | ResolveError::Driver(D::Timeout)) => &stats.driver_timeout,
            Err(ResolveError::Driver(D::ConnRefused)) => &stats.driver_refused,
            Err(ResolveError::Driver(D::BadResp)) => &stats.driver_malformed,
            Err(ResolveError::Server(S::Refused)) => &stats.server_refused,
            Err(ResolveError::Server(S::FormErr)) => &stats.server_malformed,
            Err(ResolveError::Server(S::NotFound)) => &stats.server_not_found,
            Err(ResolveError::Server(S::ServFail)) => &stats.server_serv_fail,
            Err(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Entries in the cache for `family` (the metrics' `resolver.memory.cache.length`).
    pub fn cache_length(&self, family: Family) -> usize {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.slots[family as usize].len()
    }

    /// Addresses of `domain` for a task, as `strategy` asks (see [`Self::happy_eyeballs`]).
    pub async fn resolve(
        self: &Arc<Self>,
        domain: &str,
        strategy: QueryStrategy,
    ) -> Result<Vec<IpAddr>, TaskError> {
        self.happy_eyeballs(domain, strategy, RESOLUTION_DELAY)
            .await
            .map_err(|error| TaskError::Resolver(format!("{domain}: {error}")))
    }

    /// The resolution step of Happy Eyeballs (RFC 8305 §3): with a preferred family, both
    /// families are asked at once; the preferred family's addresses win if they come within
    /// `resolution_delay` of the other family's, else the other family's are used. With a
    /// single family, only that one is asked. An empty answer is an empty list.
    pub async fn happy_eyeballs(
        self: &Arc<Self>,
        domain: &str,
        strategy: QueryStrategy,
        resolution_delay: Duration,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let (preferred, other) = match strategy {
            QueryStrategy::Ipv4Only => {
                return self.lookup(domain, Family::V4).await.0.result.clone();
            }
            QueryStrategy::Ipv6Only => {
                return self.lookup(domain, Family::V6).await.0.result.clone();
            }
            QueryStrategy::Ipv4First => (Family::V4, Family::V6),
            QueryStrategy::Ipv6First => (Family::V6, Family::V4),
        };
        let mut first = pin!(self.lookup(domain, preferred));
        let mut second = pin!(self.lookup(domain, other));
        tokio::select! {
            biased;
            (record, _) = &mut first => match record.has_addresses() {
                true => record.result.clone(),
                false => either(&record, &second.await.0),
            },
            (other, _) = &mut second => {
                if !other.has_addresses() {
                    return either(&first.await.0, &other);
                }
                match tokio::time::timeout(resolution_delay, first).await {
                    Ok((record, _)) if record.has_addresses() => record.result.clone(),
                    _ => other.result.clone(),
                }
            }
        }
    }
}

/// RFC 8305's recommended resolution delay, and g3's default.
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// The other family's addresses when the preferred one has none; else the preferred
/// family's answer (its error, or its empty list).
fn either(preferred: &Record, other: &Record) -> Result<Vec<IpAddr>, ResolveError> {
    match other.has_addresses() {
        true => other.result.clone(),
        false => preferred.result.clone(),
    }
}

impl Cache {
    /// Drops the entries nobody may use any more, and sets when to look again.
    fn sweep(&mut self, now: Instant) {
        for slots in &mut self.slots {
            slots.retain(|_, slot| {
                slot.pending.is_some()
                    || slot
                        .record
                        .as_ref()
                        .is_some_and(|r| now < r.vanish.unwrap_or(r.expire))
            });
        }
        // Still too many live names (a flood of distinct ones): keep only lookups in flight.
        for slots in &mut self.slots {
            if slots.len() > MAX_NAMES {
                slots.retain(|_, slot| slot.pending.is_some());
            }
        }
        let len: usize = self.slots.iter().map(HashMap::len).sum();
        self.sweep_at = (len * 2).max(FIRST_SWEEP_AT);
    }
}

/// The fields of a resolver's type in its resolve logs, as g3 writes them: c-ares its
/// `bind_ipv4` / `bind_ipv6` and `server`s, hickory its `bind_addr`, `server`s,
/// `server_port` and `encryption`, fail_over its `next_primary` / `next_standby`.
fn log_fields(resolver_type: &ResolverType) -> Vec<(&'static str, String)> {
    let spaced = |items: Vec<String>| items.join(" ");
    let mut fields = Vec::new();
    match resolver_type {
        ResolverType::CAres(c) => {
            fields.extend(c.bind_ipv4.map(|ip| ("bind_ipv4", ip.to_string())));
            fields.extend(c.bind_ipv6.map(|ip| ("bind_ipv6", ip.to_string())));
            let servers = c.server.0.iter().map(ToString::to_string).collect();
            fields.push(("server", spaced(servers)));
        }
        ResolverType::Hickory(h) => {
            fields.extend(h.bind_ip.map(|ip| ("bind_addr", ip.to_string())));
            let servers = h.server.0.iter().map(ToString::to_string).collect();
            fields.push(("server", spaced(servers)));
            fields.extend(h.server_port.map(|port| ("server_port", port.to_string())));
            fields.extend(h.encryption.as_ref().map(|e| {
                let protocol = match e.protocol {
                    DnsProtocol::Tls => "DnsOverTls",
                    DnsProtocol::Https => "DnsOverHttps",
                    DnsProtocol::H3 => "DnsOverHttp/3",
                    DnsProtocol::Quic => "DnsOverQuic",
                };
                ("encryption", format!("{protocol}({})", e.tls_name))
            }));
        }
        ResolverType::FailOver(f) => {
            fields.push(("next_primary", f.primary.clone()));
            fields.push(("next_standby", f.standby.clone()));
        }
        ResolverType::DenyAll => {}
    }
    fields
}
