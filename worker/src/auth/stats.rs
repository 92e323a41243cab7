//! Per-user counts for g3's `user.*` metrics: one set per user (by group, name and type)
//! and server, kept for the worker's life in one registry so that a user's counts go on
//! across the config reloads and refreshes that rebuild its `User`. A task takes its set
//! when its user is admitted; requests count when the gate lets them through, and hold
//! their place in `user.request.alive` until their permit drops; bytes count as the task
//! ends. A user's `explicit_sites` with `emit_stats` have sets of their own, in the same
//! registry: their requests count in both, under `user.site.<id>.*` too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use g3proxy_shared::types::acl::ProxyRequestType;

use g3proxy_shared::config::user_groups::DurationStats;

use super::{Site, User};
use crate::context::ServerCounters;
use crate::error::{AuthFailure, Forbidden, TaskError};

/// g3's `request` tag, by [`request_index`].
pub const REQUEST_TYPES: [&str; 7] = [
    "http_forward",
    "https_forward",
    "ftp_over_http",
    "http_connect",
    "socks_tcp_connect",
    "socks_udp_associate",
    "tcp_connect",
];

/// g3's `user.forbidden.*` names, by [`count_refusal`].
pub const FORBIDDEN: [&str; 10] = [
    "auth_failed",
    "user_expired",
    "user_blocked",
    "fully_loaded",
    "rate_limited",
    "proto_banned",
    "dest_denied",
    "ua_blocked",
    "src_blocked",
    "log_skipped",
];

/// A request type's place in the per-request arrays; a stream server's connection (no
/// request type) is g3's `tcp_connect`.
pub fn request_index(request: Option<ProxyRequestType>) -> usize {
    match request {
        Some(ProxyRequestType::HttpForward) => 0,
        Some(ProxyRequestType::HttpsForward) => 1,
        Some(ProxyRequestType::FtpOverHttp) => 2,
        Some(ProxyRequestType::HttpConnect) => 3,
        Some(ProxyRequestType::SocksTcpConnect) => 4,
        Some(ProxyRequestType::SocksUdpAssociate) => 5,
        None => 6,
    }
}

/// Counts a refusal of the user's (a login, a request) where g3 counts it, if it is one.
pub fn count_refusal(counters: &UserCounters, error: &TaskError) {
    let index = match error {
        TaskError::Auth(AuthFailure::Expired(_)) => 1,
        TaskError::Auth(AuthFailure::ClientIpBlocked(_)) => 8,
        TaskError::Auth(_) => 0,
        TaskError::Policy(Forbidden::UserBlocked(_)) => 2,
        TaskError::Policy(Forbidden::FullyLoaded(_)) => 3,
        TaskError::Policy(Forbidden::RateLimited(_)) => 4,
        TaskError::Policy(Forbidden::ProtoBanned(_)) => 5,
        TaskError::Policy(Forbidden::DestDenied(_)) => 6,
        TaskError::Policy(Forbidden::UaBlocked) => 7,
        _ => return,
    };
    counters.forbidden[index].fetch_add(1, Ordering::Relaxed);
}

/// `user.forbidden.log_skipped`: a task log event `log_rate_limit` dropped.
pub fn count_log_skipped(counters: &UserCounters) {
    counters.forbidden[9].fetch_add(1, Ordering::Relaxed);
}

/// The counts of one user (or one of its sites) on one server.
pub struct UserCounters {
    pub group: Arc<str>,
    pub user: Arc<str>,
    /// `Static`, `Dynamic`, `Anonymous` or `Unmanaged` (LDAP users not listed).
    pub user_type: &'static str,
    pub server: Arc<str>,
    /// The explicit site's id, for a site's counts.
    pub site: Option<Arc<str>>,
    /// g3's `connection` tag: `socks` for a SOCKS server's, else `http`.
    pub connection: &'static str,
    pub connections: AtomicU64,
    /// Client connections of the user (or that went to the site) open now.
    pub connections_alive: AtomicU64,
    pub requests: [AtomicU64; 7],
    pub alive: [AtomicU64; 7],
    /// Requests that got their upstream connection (or tunnel) and relay now; those that
    /// took a kept connection, and those whose kept connection failed and took a new one.
    pub ready: [AtomicU64; 7],
    pub reuse: [AtomicU64; 7],
    pub renew: [AtomicU64; 7],
    pub bytes_in: [AtomicU64; 7],
    pub bytes_out: [AtomicU64; 7],
    /// Datagrams of UDP requests.
    pub packets_in: [AtomicU64; 7],
    pub packets_out: [AtomicU64; 7],
    pub forbidden: [AtomicU64; 10],
    /// The traffic toward upstreams, by escaper and transport (`user.upstream.traffic.*`).
    pub upstream: RwLock<Vec<UpstreamTraffic>>,
    /// A site's `task.ready.duration` samples (sites only).
    pub ready_durations: Option<Mutex<ReadyDurations>>,
}

/// What went through one escaper, over TCP or UDP, for a user (so far).
pub struct UpstreamTraffic {
    pub escaper: Arc<str>,
    pub udp: bool,
    /// Bytes in and out, datagrams in and out (in: from the upstream).
    pub counts: [AtomicU64; 4],
}

impl UserCounters {
    /// A request's traffic (bytes up, down, datagrams up, down, seen from the client) through
    /// `escaper`.
    pub fn count_traffic(
        &self,
        request: usize,
        [up, down, packets_up, packets_down]: [u64; 4],
        udp: bool,
        escaper: Option<&Arc<str>>,
    ) {
        self.bytes_in[request].fetch_add(up, Ordering::Relaxed);
        self.bytes_out[request].fetch_add(down, Ordering::Relaxed);
        if udp {
            self.packets_in[request].fetch_add(packets_up, Ordering::Relaxed);
            self.packets_out[request].fetch_add(packets_down, Ordering::Relaxed);
        }
        let Some(escaper) = escaper.filter(|_| up + down > 0) else {
            return;
        };
        // What the client sent went out to the upstream, and the other way round.
        let counts = [down, up, packets_down, packets_up];
        let add = |traffic: &UpstreamTraffic| {
            for (total, add) in traffic.counts.iter().zip(counts) {
                total.fetch_add(add, Ordering::Relaxed);
            }
        };
        let find = |all: &[UpstreamTraffic]| {
            all.iter()
                .position(|t| t.udp == udp && *t.escaper == **escaper)
        };
        // Readers only, but for the first request through an escaper.
        {
            let all = self.upstream.read().unwrap_or_else(|e| e.into_inner());
            if let Some(index) = find(&all) {
                add(&all[index]);
                return;
            }
        }
        let mut all = self.upstream.write().unwrap_or_else(|e| e.into_inner());
        let index = find(&all).unwrap_or_else(|| {
            all.push(UpstreamTraffic {
                escaper: escaper.clone(),
                udp,
                counts: Default::default(),
            });
            all.len() - 1
        });
        add(&all[index]);
    }

    /// Each escaper's and transport's traffic so far.
    pub fn upstream_traffic(&self) -> Vec<(Arc<str>, bool, [u64; 4])> {
        let all = self.upstream.read().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|t| {
                let counts = t.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
                (t.escaper.clone(), t.udp, counts)
            })
            .collect()
    }
}

/// How long a site's requests took to be ready (from their start to relaying), since the
/// window began: what `duration_stats` quantiles are taken from at each emit.
pub struct ReadyDurations {
    pub config: DurationStats,
    pub window_start: std::time::Instant,
    /// Nanoseconds; at most [`MAX_SAMPLES`] per window, a uniform sample of the window's
    /// requests past that (reservoir sampling over `seen`).
    pub samples: Vec<u64>,
    pub seen: u64,
}

/// Bounds a window's samples (80 KiB per site and server).
const MAX_SAMPLES: usize = 10_000;

impl ReadyDurations {
    fn record(&mut self, nanos: u64) {
        self.seen += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(nanos);
            return;
        }
        let slot = crate::pick::random_index(usize::try_from(self.seen).unwrap_or(usize::MAX));
        if let Some(sample) = self.samples.get_mut(slot) {
            *sample = nanos;
        }
    }

    /// Starts a new window (after an emit, once `rotate` has passed).
    pub fn rotate(&mut self) {
        self.samples.clear();
        self.seen = 0;
        self.window_start = std::time::Instant::now();
    }
}

/// Group, user, user type, server and site: whose counts these are.
pub type Key = (Arc<str>, Arc<str>, &'static str, Arc<str>, Option<Arc<str>>);

impl UserCounters {
    pub fn key(&self) -> Key {
        (
            self.group.clone(),
            self.user.clone(),
            self.user_type,
            self.server.clone(),
            self.site.clone(),
        )
    }
}

static REGISTRY: Mutex<Option<HashMap<Key, Arc<UserCounters>>>> = Mutex::new(None);

/// The counts of `user` on `server`, made on first use.
pub fn counters(user: &User, server: &ServerCounters) -> Arc<UserCounters> {
    let connection = match server.server_type.as_str() {
        "SocksProxy" => "socks",
        _ => "http",
    };
    let key = (
        user.group.clone(),
        user.name.clone(),
        user.user_type,
        server.name.as_str().into(),
        None,
    );
    registered(key, connection, None)
}

/// The counts of the user of `user_counters` toward its site `site`, on the same server.
pub fn site_counters(user_counters: &UserCounters, site: &Site) -> Arc<UserCounters> {
    let mut key = user_counters.key();
    key.4 = Some(site.id.clone());
    let counters = registered(key, user_counters.connection, Some(&site.duration_stats));
    // A reload may have changed the site's quantiles or window.
    if let Some(durations) = &counters.ready_durations {
        let mut durations = durations.lock().unwrap_or_else(|e| e.into_inner());
        if durations.config != site.duration_stats {
            durations.config = site.duration_stats.clone();
            durations.rotate();
        }
    }
    counters
}

/// Swaps the user's (or site's) counts a client connection holds: `new` counts one more
/// connection, and one more open until it is swapped out in turn.
pub fn hold_connection(held: &mut Option<Arc<UserCounters>>, new: Option<Arc<UserCounters>>) {
    if let Some(new) = &new {
        new.connections.fetch_add(1, Ordering::Relaxed);
        new.connections_alive.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(old) = std::mem::replace(held, new) {
        old.connections_alive.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request of type `index` ready to relay, `since` the gate let it through (over
/// a kept upstream connection when `reused`).
pub fn count_ready(counters: &UserCounters, index: usize, reused: bool, since: std::time::Instant) {
    counters.ready[index].fetch_add(1, Ordering::Relaxed);
    if reused {
        counters.reuse[index].fetch_add(1, Ordering::Relaxed);
    }
    if let Some(durations) = &counters.ready_durations {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(nanos);
    }
}

fn registered(
    key: Key,
    connection: &'static str,
    durations: Option<&DurationStats>,
) -> Arc<UserCounters> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with_key(|(group, name, user_type, server, site)| {
            Arc::new(UserCounters {
                group: group.clone(),
                user: name.clone(),
                user_type,
                server: server.clone(),
                site: site.clone(),
                connection,
                connections_alive: AtomicU64::new(0),
                ready: Default::default(),
                reuse: Default::default(),
                renew: Default::default(),
                packets_in: Default::default(),
                packets_out: Default::default(),
                upstream: RwLock::new(Vec::new()),
                ready_durations: durations.map(|config| {
                    Mutex::new(ReadyDurations {
                        config: config.clone(),
                        window_start: std::time::Instant::now(),
                        samples: Vec::new(),
                        seen: 0,
                    })
                }),
                connections: AtomicU64::new(0),
                requests: Default::default(),
                alive: Default::default(),
                bytes_in: Default::default(),
                bytes_out: Default::default(),
                forbidden: Default::default(),
            })
        })
        .clone()
}

/// Forgets the counts no task holds any more (a user gone with a refresh, an LDAP user not
/// seen again): called right after an emit has sent what they had.
pub fn sweep() {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = registry.as_mut() {
        map.retain(|_, counters| Arc::strong_count(counters) > 1);
    }
}

/// Every user's counts so far, for the metrics emitter.
pub fn all() -> Vec<Arc<UserCounters>> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .as_ref()
        .map(|map| map.values().cloned().collect())
        .unwrap_or_default()
}

/// A request's place in `user.request.alive` (and its site's), given back when it drops.
pub struct AliveCount {
    /// The user's counters and its site's, where each is counted.
    held: [Option<Arc<UserCounters>>; 2],
    index: usize,
}

impl AliveCount {
    /// Counts a request of type `index` that starts now, for the user and its site.
    pub fn start(
        counters: &Arc<UserCounters>,
        site: Option<Arc<UserCounters>>,
        index: usize,
    ) -> AliveCount {
        Self::hold([Some(counters.clone()), site], index)
    }

    /// The same for the site alone, of a request its user counted already (before its
    /// target, and so its site, was known).
    pub fn site_only(site: Arc<UserCounters>, index: usize) -> AliveCount {
        Self::hold([None, Some(site)], index)
    }

    fn hold(held: [Option<Arc<UserCounters>>; 2], index: usize) -> AliveCount {
        for counters in held.iter().flatten() {
            counters.requests[index].fetch_add(1, Ordering::Relaxed);
            counters.alive[index].fetch_add(1, Ordering::Relaxed);
        }
        AliveCount { held, index }
    }
}

impl Drop for AliveCount {
    fn drop(&mut self) {
        for counters in self.held.iter().flatten() {
            counters.alive[self.index].fetch_sub(1, Ordering::Relaxed);
        }
    }
}
