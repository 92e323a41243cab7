//! The context every task of this worker shares: the drain phase and the task registry.
//! Passed explicitly; the worker has no statics but its process log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

/// Where the worker is in its life. Ordered: a phase only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// No new connections; running tasks finish. Keep-alive clients get `Connection: close`.
    Draining,
    /// Every task ends now.
    ForceQuit,
}

pub struct Context {
    pub phase: watch::Receiver<Phase>,
    pub tasks: Arc<TaskRegistry>,
}

impl Context {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

/// Counters of one server, as `g3proxy-ctl server NAME status` shows them.
#[derive(Default)]
pub struct ServerCounters {
    pub name: String,
    pub total_conn: AtomicU64,
    pub total_task: AtomicU64,
    pub alive: AtomicU64,
}

impl ServerCounters {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(ServerCounters {
            name: name.to_string(),
            ..Default::default()
        })
    }
}

/// Every live task of the worker, so draining knows when it is done and status can report the
/// oldest task. One short lock per connection, which is nothing next to its syscalls.
#[derive(Default)]
pub struct TaskRegistry {
    next_id: AtomicU64,
    started: Mutex<BTreeMap<u64, Instant>>,
    changed: Notify,
}

impl TaskRegistry {
    pub fn register(self: &Arc<Self>, server: &Arc<ServerCounters>) -> TaskGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Instant::now());
        server.total_task.fetch_add(1, Ordering::Relaxed);
        server.alive.fetch_add(1, Ordering::Relaxed);
        TaskGuard {
            id,
            registry: self.clone(),
            server: server.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn alive(&self) -> u64 {
        self.lock().len() as u64
    }

    pub fn oldest_age(&self) -> Option<Duration> {
        self.lock().values().next().map(Instant::elapsed)
    }

    /// Resolves after the next task ends.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

pub struct TaskGuard {
    id: u64,
    registry: Arc<TaskRegistry>,
    server: Arc<ServerCounters>,
}

impl TaskGuard {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The task is now alive on `server` instead.
    pub fn move_to(&mut self, server: &Arc<ServerCounters>) {
        server.alive.fetch_add(1, Ordering::Relaxed);
        self.server.alive.fetch_sub(1, Ordering::Relaxed);
        self.server = server.clone();
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.server.alive.fetch_sub(1, Ordering::Relaxed);
        self.registry.changed.notify_waiters();
    }
}
