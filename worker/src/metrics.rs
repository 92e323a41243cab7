//! StatsD metrics of one worker, with g3proxy's names: every `emit_interval`, per server,
//! `server.connection.total` and `server.task.total` (counts: what happened since the last
//! emit) and `server.task.alive` (a gauge). Tags: `daemon_group`, `stat_id` (this worker's
//! pid: the series of each worker process are its own, and a backend sums them as g3's
//! `stat_id` asks it to), `server`, `online` (`y` while the worker serves, `n` draining).
//!
//! Counts are changes, so no counter goes back across a reload (the old generation's last
//! changes and the new one's first simply add), a crash (a dead worker's series stops; the
//! supervisor sets its gauges to 0) or a supervisor replacement (workers emit on their own).
//! The last emit, as the worker exits, sets its gauges to what is left: nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use g3proxy_shared::config::stat::StatConfig;
use g3proxy_shared::statsd::StatsdSink;

use crate::context::{Context, Phase};
use crate::servers::Server;

pub struct Metrics {
    sink: StatsdSink,
    servers: Vec<(Arc<Server>, Last)>,
}

/// A server's counters at the last emit.
#[derive(Default, Clone, Copy)]
struct Last {
    connections: u64,
    tasks: u64,
}

impl Metrics {
    /// Starts emitting for `servers`; `None` (logged) when the target cannot be used.
    pub fn start(
        config: &StatConfig,
        group: &str,
        servers: &[Arc<Server>],
        context: &Arc<Context>,
    ) -> Option<Arc<Mutex<Metrics>>> {
        let sink = match StatsdSink::new(config, group, std::process::id() as u64) {
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
                .map(|s| (s.clone(), Last::default()))
                .collect(),
        }));
        let emitter = Arc::downgrade(&metrics);
        let (interval, context) = (config.emit_interval.0, context.clone());
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
        for (server, last) in &mut self.servers {
            let counters = &server.counters;
            let now = Last {
                connections: counters.total_conn.load(Ordering::Relaxed),
                tasks: counters.total_task.load(Ordering::Relaxed),
            };
            let tags = [("server", counters.name.as_str()), ("online", online)];
            let connections = now.connections.saturating_sub(last.connections);
            if connections > 0 {
                self.sink
                    .count("server.connection.total", connections, &tags);
            }
            let tasks = now.tasks.saturating_sub(last.tasks);
            if tasks > 0 {
                self.sink.count("server.task.total", tasks, &tags);
            }
            self.sink.gauge(
                "server.task.alive",
                counters.alive.load(Ordering::Relaxed),
                &tags,
            );
            *last = now;
        }
        self.sink.flush();
    }
}
