//! StatsD metrics of one worker, with g3proxy's names: every `emit_interval`, per server,
//! `server.connection.total`, `server.task.total`, `server.traffic.{in,out}.bytes` (tag
//! `transport`), `server.forbidden.{auth_failed,dest_denied,user_blocked}` (counts: what
//! happened since the last emit) and `server.task.alive` (a gauge). Tags: `daemon_group`, `stat_id` (this worker's
//! pid: the series of each worker process are its own, and a backend sums them as g3's
//! `stat_id` asks it to), `server`, `online` (`y` while the worker serves, `n` draining).
//!
//! Counts are changes, so no counter goes back across a reload (the old generation's last
//! changes and the new one's first simply add), a crash (a dead worker's series stops; the
//! supervisor sets its gauges to 0) or a supervisor replacement (workers emit on their own).
//! The last emit, as the worker exits, sets its gauges to what is left: nothing.
//!
//! Per escaper: `escaper.task.total`, `escaper.connection.{attempt,establish}`,
//! `escaper.forbidden.ip_blocked`. Per resolver and `rr_type` (A, AAAA): the
//! `resolver.query.*` counts of [`LookupStats::METRICS`] and the gauge
//! `resolver.memory.cache.length`. Per server also g3's `listen.accepted` / `.dropped` /
//! `.timeout` / `.failed` and the gauge `listen.instance.count`; per logger (tag `logger`:
//! task, escape, resolve) `logger.message.total` / `.pass`, `logger.traffic.pass` and
//! `logger.message.drop` (tag `drop_type`). A server's or escaper's `extra_metrics_tags` are
//! added to each of its series. Per user and server (tags `user_group`, `user`,
//! `user_type`, `server`): `user.connection.total`, `user.forbidden.*`, and by `request`
//! type `user.request.total`, `user.traffic.{in,out}.bytes` and the gauge
//! `user.request.alive`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use g3proxy_shared::config::Config;
use g3proxy_shared::config::stat::StatConfig;
use g3proxy_shared::config::user_groups::DurationStats;
use g3proxy_shared::statsd::StatsdSink;

use crate::auth::stats::{self, UserCounters};
use crate::context::{Context, Phase, ServerCounters};
use crate::escapers::Escaper;
use crate::log::Logger;
use crate::resolvers::{Family, LookupStats, Resolver};
use crate::servers::Server;

/// A module's `extra_metrics_tags`, added to each of its series.
type ExtraTags = Vec<(String, String)>;

pub struct Metrics {
    sink: StatsdSink,
    servers: Vec<(Arc<Server>, Last, ExtraTags)>,
    /// Each escaper's counters at the last emit: attempts, established, ip_blocked.
    escapers: Vec<(Arc<Escaper>, [u64; 3], ExtraTags)>,
    /// Each resolver's counters at the last emit, A then AAAA.
    resolvers: Vec<(Arc<Resolver>, [[u64; 11]; 2])>,
    /// Each logger's counters at the last emit: total, passed, bytes, and drops (overflow,
    /// closed, unreachable).
    loggers: Vec<(Arc<Logger>, [u64; 6])>,
    /// Each user's counts at the last emit (forgotten with the counts: `stats::sweep`), and
    /// its upstream traffic by escaper and transport.
    users: HashMap<stats::Key, UserLast>,
    users_upstream: HashMap<(stats::Key, Arc<str>, bool), [u64; 4]>,
}

/// A user's counts on a server at the last emit.
#[derive(Default, Clone, Copy)]
struct UserLast {
    connections: u64,
    requests: [u64; 7],
    ready: [u64; 7],
    reuse: [u64; 7],
    renew: [u64; 7],
    bytes_in: [u64; 7],
    bytes_out: [u64; 7],
    packets_in: [u64; 7],
    packets_out: [u64; 7],
    forbidden: [u64; 10],
}

impl UserLast {
    fn of(counters: &UserCounters) -> UserLast {
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        UserLast {
            connections: read(&counters.connections),
            requests: counters.requests.each_ref().map(read),
            ready: counters.ready.each_ref().map(read),
            reuse: counters.reuse.each_ref().map(read),
            renew: counters.renew.each_ref().map(read),
            bytes_in: counters.bytes_in.each_ref().map(read),
            bytes_out: counters.bytes_out.each_ref().map(read),
            packets_in: counters.packets_in.each_ref().map(read),
            packets_out: counters.packets_out.each_ref().map(read),
            forbidden: counters.forbidden.each_ref().map(read),
        }
    }
}

/// A server's counters at the last emit.
#[derive(Default, Clone, Copy)]
struct Last {
    connections: u64,
    tasks: u64,
    bytes_in: u64,
    bytes_out: u64,
    udp_bytes_in: u64,
    udp_bytes_out: u64,
    udp_packets_in: u64,
    udp_packets_out: u64,
    auth_failed: u64,
    dest_denied: u64,
    user_blocked: u64,
    accepted: u64,
    dropped: u64,
    timeout: u64,
    failed: u64,
}

impl Last {
    fn of(counters: &ServerCounters) -> Last {
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        Last {
            connections: read(&counters.total_conn),
            tasks: read(&counters.total_task),
            bytes_in: read(&counters.bytes_in),
            bytes_out: read(&counters.bytes_out),
            udp_bytes_in: read(&counters.udp_bytes_in),
            udp_bytes_out: read(&counters.udp_bytes_out),
            udp_packets_in: read(&counters.udp_packets_in),
            udp_packets_out: read(&counters.udp_packets_out),
            auth_failed: read(&counters.auth_failed),
            dest_denied: read(&counters.dest_denied),
            user_blocked: read(&counters.user_blocked),
            accepted: read(&counters.listen_accepted),
            dropped: read(&counters.listen_dropped),
            timeout: read(&counters.listen_timeout),
            failed: read(&counters.listen_failed),
        }
    }
}

/// The modules a worker's metrics cover.
pub struct Measured<'a> {
    pub servers: &'a [Arc<Server>],
    pub escapers: &'a [Arc<Escaper>],
    pub resolvers: &'a [Arc<Resolver>],
    pub loggers: &'a [Arc<Logger>],
}

impl Metrics {
    /// Starts emitting for the `measured` modules, with the tags `config` gives each; `None`
    /// (logged) when the target cannot be used.
    pub fn start(
        config: &Config,
        stat: &StatConfig,
        group: &str,
        measured: Measured<'_>,
        context: &Arc<Context>,
    ) -> Option<Arc<Mutex<Metrics>>> {
        let Measured {
            servers,
            escapers,
            resolvers,
            loggers,
        } = measured;
        let sink = match StatsdSink::new(stat, group, std::process::id() as u64) {
            Ok(sink) => sink,
            Err(error) => {
                tracing::warn!("metrics: cannot reach the stat target: {error}");
                return None;
            }
        };
        let metrics = Arc::new(Mutex::new(Metrics {
            sink,
            servers: servers
                .iter()
                .map(|s| {
                    let extra = config
                        .server(&s.counters.name)
                        .map(|c| &c.common.extra_metrics_tags);
                    (s.clone(), Last::default(), extra_tags(extra))
                })
                .collect(),
            escapers: escapers
                .iter()
                .map(|e| {
                    let extra = config
                        .escapers
                        .iter()
                        .find(|c| c.name() == &*e.name)
                        .map(|c| &c.common.extra_metrics_tags);
                    (e.clone(), [0; 3], extra_tags(extra))
                })
                .collect(),
            resolvers: resolvers
                .iter()
                .map(|r| (r.clone(), [[0; 11]; 2]))
                .collect(),
            // Each module's handle (`lt-<server>`, ...), as g3 has a logger per module.
            loggers: loggers
                .iter()
                .flat_map(|l| l.handles())
                .map(|l| (l, [0; 6]))
                .collect(),
            users: HashMap::new(),
            users_upstream: HashMap::new(),
        }));
        let emitter = Arc::downgrade(&metrics);
        let (interval, context) = (stat.emit_interval.0, context.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(metrics) = emitter.upgrade() else {
                    return;
                };
                let online = context.phase() == Phase::Serving;
                metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .emit(online);
            }
        });
        Some(metrics)
    }

    pub fn emit(&mut self, online: bool) {
        let online = if online { "y" } else { "n" };
        for (server, last, extra) in &mut self.servers {
            let counters = &server.counters;
            let now = Last::of(counters);
            let mut tags = vec![("server", counters.name.as_str()), ("online", online)];
            tags.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut tcp = tags.clone();
            tcp.push(("transport", "tcp"));
            let mut udp = tags.clone();
            udp.push(("transport", "udp"));
            // Only what changed: an idle server sends its gauge alone.
            let changes = [
                (
                    "server.connection.total",
                    now.connections,
                    last.connections,
                    &tags[..],
                ),
                ("server.task.total", now.tasks, last.tasks, &tags[..]),
                (
                    "server.traffic.in.bytes",
                    now.bytes_in,
                    last.bytes_in,
                    &tcp[..],
                ),
                (
                    "server.traffic.out.bytes",
                    now.bytes_out,
                    last.bytes_out,
                    &tcp[..],
                ),
                (
                    "server.traffic.in.bytes",
                    now.udp_bytes_in,
                    last.udp_bytes_in,
                    &udp[..],
                ),
                (
                    "server.traffic.out.bytes",
                    now.udp_bytes_out,
                    last.udp_bytes_out,
                    &udp[..],
                ),
                (
                    "server.traffic.in.packets",
                    now.udp_packets_in,
                    last.udp_packets_in,
                    &udp[..],
                ),
                (
                    "server.traffic.out.packets",
                    now.udp_packets_out,
                    last.udp_packets_out,
                    &udp[..],
                ),
                (
                    "server.forbidden.auth_failed",
                    now.auth_failed,
                    last.auth_failed,
                    &tags[..],
                ),
                (
                    "server.forbidden.dest_denied",
                    now.dest_denied,
                    last.dest_denied,
                    &tags[..],
                ),
                (
                    "server.forbidden.user_blocked",
                    now.user_blocked,
                    last.user_blocked,
                    &tags[..],
                ),
                ("listen.accepted", now.accepted, last.accepted, &tags[..]),
                ("listen.dropped", now.dropped, last.dropped, &tags[..]),
                ("listen.timeout", now.timeout, last.timeout, &tags[..]),
                ("listen.failed", now.failed, last.failed, &tags[..]),
            ];
            for (name, now, before, tags) in changes {
                let delta = now.saturating_sub(before);
                if delta > 0 {
                    self.sink.count(name, delta, tags);
                }
            }
            self.sink.gauge(
                "server.task.alive",
                counters.alive.load(Ordering::Relaxed),
                &tags,
            );
            self.sink.gauge(
                "listen.instance.count",
                counters.listen_instances.load(Ordering::Relaxed),
                &tags,
            );
            *last = now;
        }
        for (escaper, last, extra) in &mut self.escapers {
            let counters = &escaper.counters;
            let now = [
                counters.attempts.load(Ordering::Relaxed),
                counters.established.load(Ordering::Relaxed),
                counters.ip_blocked.load(Ordering::Relaxed),
            ];
            let mut tags = vec![("escaper", &*escaper.name)];
            tags.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            // g3 counts a task and its remote connection apart; here each is one connect.
            let names = [
                &["escaper.task.total", "escaper.connection.attempt"][..],
                &["escaper.connection.establish"][..],
                &["escaper.forbidden.ip_blocked"][..],
            ];
            for ((names, now), before) in names.iter().zip(now).zip(*last) {
                let delta = now.saturating_sub(before);
                if delta > 0 {
                    for name in *names {
                        self.sink.count(name, delta, &tags);
                    }
                }
            }
            *last = now;
        }
        for (resolver, last) in &mut self.resolvers {
            for family in [Family::V4, Family::V6] {
                let tags = [
                    ("resolver", resolver.name.as_str()),
                    ("rr_type", family.rr_type()),
                ];
                let now = resolver.stats(family).snapshot();
                let before = &mut last[family as usize];
                for ((name, now), before) in LookupStats::METRICS.iter().zip(now).zip(*before) {
                    let delta = now.saturating_sub(before);
                    if delta > 0 {
                        self.sink.count(name, delta, &tags);
                    }
                }
                *before = now;
                let length = resolver.cache_length(family) as u64;
                self.sink
                    .gauge("resolver.memory.cache.length", length, &tags);
            }
        }
        self.emit_users();
        for (logger, last) in &mut self.loggers {
            let stats = &logger.stats;
            let now = [
                &stats.total,
                &stats.passed,
                &stats.bytes,
                &stats.overflow,
                &stats.closed,
                &stats.unreachable,
            ]
            .map(|counter| counter.load(Ordering::Relaxed));
            let tags = [("logger", &*logger.name)];
            let series: [(&str, &[(&str, &str)]); 6] = [
                ("logger.message.total", &[]),
                ("logger.message.pass", &[]),
                ("logger.traffic.pass", &[]),
                ("logger.message.drop", &[("drop_type", "ChannelOverflow")]),
                ("logger.message.drop", &[("drop_type", "ChannelClosed")]),
                ("logger.message.drop", &[("drop_type", "PeerUnreachable")]),
            ];
            for (((name, extra), now), before) in series.iter().zip(now).zip(*last) {
                let delta = now.saturating_sub(before);
                if delta > 0 {
                    let all: Vec<(&str, &str)> = tags.iter().chain(extra.iter()).copied().collect();
                    self.sink.count(name, delta, &all);
                }
            }
            *last = now;
        }
        self.sink.flush();
    }

    /// g3's `user.*` series: per user (tags `user_group`, `user`, `user_type`) and server
    /// (with its `extra_metrics_tags`), by request type (`request`) where g3 has one; a
    /// site's the same under `user.site.<id>.*`, with its `task.ready.duration` quantiles.
    fn emit_users(&mut self) {
        let all = stats::all();
        for counters in &all {
            let last = self.users.entry(counters.key()).or_default();
            let now = UserLast::of(counters);
            let prefix = match &counters.site {
                None => "user.".to_string(),
                Some(site) => format!("user.site.{site}."),
            };
            let mut tags = vec![
                ("user_group", &*counters.group),
                ("user", &*counters.user),
                ("user_type", counters.user_type),
                ("server", &*counters.server),
            ];
            if let Some((_, _, extra)) = self
                .servers
                .iter()
                .find(|(server, _, _)| server.counters.name == *counters.server)
            {
                tags.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            let sink = &mut self.sink;
            let mut count = |name: &str, now: u64, before: u64, extra: Option<(&str, &str)>| {
                let delta = now.saturating_sub(before);
                if delta > 0 {
                    let mut all = tags.clone();
                    all.extend(extra);
                    sink.count(&format!("{prefix}{name}"), delta, &all);
                }
            };
            count(
                "connection.total",
                now.connections,
                last.connections,
                Some(("connection", counters.connection)),
            );
            for (index, name) in stats::FORBIDDEN.iter().enumerate() {
                let metric = format!("forbidden.{name}");
                count(&metric, now.forbidden[index], last.forbidden[index], None);
            }
            for (index, request) in stats::REQUEST_TYPES.iter().enumerate() {
                let request = Some(("request", *request));
                let per_request = [
                    ("request.total", now.requests, last.requests),
                    ("request.ready", now.ready, last.ready),
                    ("request.reuse", now.reuse, last.reuse),
                    ("request.renew", now.renew, last.renew),
                    ("traffic.in.bytes", now.bytes_in, last.bytes_in),
                    ("traffic.out.bytes", now.bytes_out, last.bytes_out),
                    ("traffic.in.packets", now.packets_in, last.packets_in),
                    ("traffic.out.packets", now.packets_out, last.packets_out),
                ];
                for (name, now, before) in per_request {
                    count(name, now[index], before[index], request);
                }
            }
            for (index, request) in stats::REQUEST_TYPES.iter().enumerate() {
                // Only for the request types the user has made.
                if now.requests[index] > 0 {
                    let mut all = tags.clone();
                    all.push(("request", request));
                    let alive = counters.alive[index].load(Ordering::Relaxed);
                    sink.gauge(&format!("{prefix}request.alive"), alive, &all);
                }
            }
            if now.connections > 0 {
                // g3 tags this gauge `connection: http` whatever the server.
                let mut all = tags.clone();
                all.push(("connection", "http"));
                let alive = counters.connections_alive.load(Ordering::Relaxed);
                sink.gauge(&format!("{prefix}l7.connection.alive"), alive, &all);
            }
            if let Some(durations) = &counters.ready_durations {
                let mut guard = durations.lock().unwrap_or_else(|e| e.into_inner());
                let durations = &mut *guard;
                let metric = format!("{prefix}task.ready.duration");
                for (quantile, value) in ready_quantiles(&mut durations.samples, &durations.config)
                {
                    let mut all = tags.clone();
                    all.push(("quantile", &quantile));
                    sink.gauge_float(&metric, value, &all);
                }
                if durations.window_start.elapsed() >= durations.config.rotate.0 {
                    durations.rotate();
                }
            }
            *last = now;
            self.emit_user_upstream(counters, &prefix);
        }
        // What no task holds any more was sent: forget it here and there.
        drop(all);
        stats::sweep();
        let live: std::collections::HashSet<_> = stats::all().iter().map(|c| c.key()).collect();
        self.users.retain(|key, _| live.contains(key));
        self.users_upstream
            .retain(|(key, _, _), _| live.contains(key));
    }
}

impl Metrics {
    /// `user.upstream.traffic.*` (or a site's): per escaper (with its `extra_metrics_tags`)
    /// and `transport`, without the server, as g3 tags them.
    fn emit_user_upstream(&mut self, counters: &UserCounters, prefix: &str) {
        for (escaper, udp, counts) in counters.upstream_traffic() {
            let key = (counters.key(), escaper.clone(), udp);
            let last = self.users_upstream.entry(key).or_default();
            let mut tags = vec![
                ("user_group", &*counters.group),
                ("user", &*counters.user),
                ("user_type", counters.user_type),
                ("escaper", &*escaper),
                ("transport", if udp { "udp" } else { "tcp" }),
            ];
            if let Some((_, _, extra)) = self.escapers.iter().find(|(e, _, _)| *e.name == *escaper)
            {
                tags.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            let names = ["in.bytes", "out.bytes", "in.packets", "out.packets"];
            for (index, name) in names.iter().enumerate() {
                let delta = counts[index].saturating_sub(last[index]);
                if delta > 0 {
                    let metric = format!("{prefix}upstream.traffic.{name}");
                    self.sink.count(&metric, delta, &tags);
                }
            }
            *last = counts;
        }
    }
}

/// A window's `task.ready.duration` points, in nanoseconds: `min`, `max`, `mean`, then each
/// configured quantile under its name as written (nothing for an empty window).
fn ready_quantiles(samples: &mut [u64], config: &DurationStats) -> Vec<(String, f64)> {
    if samples.is_empty() {
        return Vec::new();
    }
    samples.sort_unstable();
    let last = samples.len() - 1;
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    let mut points = vec![
        ("min".to_string(), samples[0] as f64),
        ("max".to_string(), samples[last] as f64),
        ("mean".to_string(), sum as f64 / samples.len() as f64),
    ];
    for (name, quantile) in &config.quantiles {
        let rank = (quantile * last as f64).round() as usize;
        points.push((name.clone(), samples[rank.min(last)] as f64));
    }
    points
}

/// A module's `extra_metrics_tags` as the sink takes them.
fn extra_tags(tags: Option<&std::collections::BTreeMap<String, String>>) -> ExtraTags {
    tags.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
