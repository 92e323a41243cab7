//! Generations: a set of worker processes from one binary on disk and one config snapshot.
//! Numbers only grow. A generation is `Starting` until every worker said READY, then
//! `Current`; the one it replaced is `Draining` until its last worker exits.

pub mod worker;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use g3proxy_shared::types::unix_secs;

use g3proxy_shared::config::{Config, ConfigBundle};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::event::{CtlReply, SnapshotGeneration, SnapshotWorker};
use crate::listeners::ListenerKey;
use worker::WorkerProcess;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationState {
    Starting,
    Current,
    Draining { deadline: SystemTime },
}

pub struct Slot {
    pub process: Option<WorkerProcess>,
    pub ready: bool,
    pub started: Instant,
    /// Crashes in a row, for the restart backoff.
    pub failures: u32,
}

pub struct Generation {
    pub number: u64,
    pub state: GenerationState,
    pub config: Arc<Config>,
    pub bundle: Arc<ConfigBundle>,
    pub binary: Arc<worker::PinnedBinary>,
    pub version: Option<String>,
    pub slots: Vec<Slot>,
    /// Who asked for this generation, answered when it is current or rolled back.
    pub waiting: Option<oneshot::Sender<CtlReply>>,
    /// Listeners bound for this generation, closed again if it is rolled back.
    pub newly_bound: Vec<ListenerKey>,
}

impl Generation {
    pub fn all_ready(&self) -> bool {
        self.slots.iter().all(|s| s.ready && s.process.is_some())
    }

    pub fn has_processes(&self) -> bool {
        self.slots.iter().any(|s| s.process.is_some())
    }

    pub fn processes(&self) -> impl Iterator<Item = &WorkerProcess> {
        self.slots.iter().filter_map(|s| s.process.as_ref())
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            GenerationState::Starting => "starting",
            GenerationState::Current => "current",
            GenerationState::Draining { .. } => "draining",
        }
    }

    pub fn snapshot(&self) -> SnapshotGeneration {
        let deadline = match self.state {
            GenerationState::Draining { deadline } => Some(unix_secs(deadline)),
            _ => None,
        };
        SnapshotGeneration {
            generation: self.number,
            state: self.state_name().to_string(),
            binary: self.binary.path.display().to_string(),
            version: self.version.clone().unwrap_or_default(),
            drain_deadline_unix_secs: deadline,
            workers: self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(index, slot)| {
                    slot.process
                        .as_ref()
                        .map(|p| SnapshotWorker { index, pid: p.pid })
                })
                .collect(),
        }
    }
}

/// Restart delay after `failures` crashes in a row: 100 ms doubling up to 10 s.
pub fn restart_backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(restart_backoff(0), Duration::from_millis(100));
        assert_eq!(restart_backoff(3), Duration::from_millis(800));
        assert_eq!(restart_backoff(30), Duration::from_secs(10));
    }
}
