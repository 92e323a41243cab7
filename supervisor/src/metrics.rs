//! Fleet metrics of our own, which no peer has: the supervisor emits, every `emit_interval`,
//! how many generations and workers are alive in each state, how long the soonest drain has
//! left, and counts of generations served (start, reload, upgrade), rolled back, and worker
//! restarts. Tags `daemon_group` and `stat_id` (the supervisor's pid). The workers emit the
//! server metrics themselves (`worker/src/metrics.rs`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use g3proxy_shared::config::stat::StatConfig;
use g3proxy_shared::statsd::StatsdSink;

use crate::fleet::{Generation, GenerationState};

pub struct FleetMetrics {
    sink: StatsdSink,
    pub interval: std::time::Duration,
    /// Counts since the last emit.
    pub served: u64,
    pub rolled_back: u64,
    pub worker_restarts: u64,
}

impl FleetMetrics {
    pub fn new(config: &StatConfig, group: &str) -> Option<FleetMetrics> {
        match StatsdSink::new(config, group, std::process::id() as u64) {
            Ok(sink) => Some(FleetMetrics {
                sink,
                interval: config.emit_interval.0,
                served: 0,
                rolled_back: 0,
                worker_restarts: 0,
            }),
            Err(error) => {
                tracing::warn!("fleet metrics: cannot reach the stat target: {error}");
                None
            }
        }
    }

    pub fn emit(&mut self, generations: &BTreeMap<u64, Generation>) {
        let state_of = |generation: &Generation| match generation.state {
            GenerationState::Starting => "starting",
            GenerationState::Current => "current",
            GenerationState::Draining { .. } => "draining",
        };
        for state in ["starting", "current", "draining"] {
            let of_state = generations.values().filter(|g| state_of(g) == state);
            let (count, workers) = of_state.fold((0, 0), |(count, workers), generation| {
                (count + 1, workers + generation.processes().count() as u64)
            });
            let tags = [("state", state)];
            self.sink.gauge("fleet.generation.count", count, &tags);
            self.sink.gauge("fleet.worker.count", workers, &tags);
        }
        let soonest = generations
            .values()
            .filter_map(|g| match g.state {
                GenerationState::Draining { deadline } => Some(deadline),
                _ => None,
            })
            .min();
        if let Some(deadline) = soonest {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs();
            self.sink.gauge("fleet.drain.seconds_left", left, &[]);
        }
        for (name, count) in [
            ("fleet.generation.served", std::mem::take(&mut self.served)),
            (
                "fleet.generation.rolled_back",
                std::mem::take(&mut self.rolled_back),
            ),
            (
                "fleet.worker.restart",
                std::mem::take(&mut self.worker_restarts),
            ),
        ] {
            if count > 0 {
                self.sink.count(name, count, &[]);
            }
        }
        self.sink.flush();
    }
}
