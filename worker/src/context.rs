//! The context every task of this worker shares: the drain phase and the task registry.
//! Passed explicitly; the worker has no statics but its process log.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

/// Where the worker is in its life. Ordered: a phase only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Serving = 0,
    /// No new connections; running tasks finish. Keep-alive clients get `Connection: close`.
    Draining,
    /// Every task ends now.
    ForceQuit,
}

pub struct Context {
    /// For tasks that wait for a phase change (accept loops, UDP relays): a wait per task.
    pub phase: watch::Receiver<Phase>,
    /// The same phase for the checks of every request and every poll: an atomic read, where
    /// the watch's lock and waiter list are shared by every thread of the worker.
    phase_now: AtomicU8,
    pub tasks: Arc<TaskRegistry>,
    /// Wakers of tasks that check the phase only when polled (tunnels).
    pub quit_wakers: QuitWakers,
    /// Read buffers of keep-alive connections between their requests.
    pub buffers: BufferCache,
    /// Where task logs go (the `log` section's `task` driver); none when discarded.
    pub task_log: Option<Arc<crate::log::Logger>>,
}

/// Buffers of connections that went idle, for the next connection that reads: a keep-alive
/// client gives its read buffer back between requests (an idle connection holds none) and
/// takes one again when its next request comes, which under load is every request. Taking
/// it here instead of from the allocator spares a large allocation and the consolidation of
/// glibc's free lists that comes with it. At most [`BufferCache::MAX`] are kept.
#[derive(Default)]
pub struct BufferCache {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferCache {
    /// The capacity of a cached buffer.
    pub const SIZE: usize = 8 * 1024;
    const MAX: usize = 256;

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Holders only push and pop: a panic cannot leave the list half-changed.
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer of [`BufferCache::SIZE`] bytes' capacity.
    pub fn take(&self) -> Vec<u8> {
        self.lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::SIZE))
    }

    /// Keeps `buffer` for another connection if it is a plain one (grown ones go back to
    /// the allocator) and there is room.
    pub fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() != Self::SIZE {
            return;
        }
        buffer.clear();
        let mut free = self.lock();
        if free.len() < Self::MAX {
            free.push(buffer);
        }
    }
}

/// How a task that waits on its sockets alone (a tunnel) learns of force-quit without a
/// phase waiter of its own: it leaves its waker here once, and force-quit wakes them all.
#[derive(Default)]
pub struct QuitWakers {
    next_id: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl QuitWakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waker>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes every registered task, once: only at force-quit, after which a task polled
    /// again sees the phase and ends (it does not register again with the same waker).
    fn wake_all(&self) {
        let wakers: Vec<Waker> = self.lock().drain().map(|(_, w)| w).collect();
        for waker in wakers {
            waker.wake();
        }
    }
}

/// One task's entry in [`QuitWakers`], removed when the task's future is dropped.
pub struct QuitRegistration<'a> {
    wakers: &'a QuitWakers,
    id: Option<u64>,
    /// What was registered: the lock is taken again only if the task's waker changes.
    registered: Option<Waker>,
}

impl<'a> QuitRegistration<'a> {
    pub fn new(wakers: &'a QuitWakers) -> Self {
        QuitRegistration {
            wakers,
            id: None,
            registered: None,
        }
    }

    pub fn register(&mut self, waker: &Waker) {
        if self.registered.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        let id = *self
            .id
            .get_or_insert_with(|| self.wakers.next_id.fetch_add(1, Ordering::Relaxed));
        self.wakers.lock().insert(id, waker.clone());
        self.registered = Some(waker.clone());
    }
}

impl Drop for QuitRegistration<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.wakers.lock().remove(&id);
        }
    }
}

impl Context {
    pub fn new(phase: watch::Receiver<Phase>, tasks: Arc<TaskRegistry>) -> Context {
        let now = *phase.borrow();
        Context {
            phase,
            phase_now: AtomicU8::new(now as u8),
            tasks,
            quit_wakers: QuitWakers::default(),
            buffers: BufferCache::default(),
            task_log: None,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase_now.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::ForceQuit,
        }
    }

    /// Moves the worker to `phase`, for both readers of it; at force-quit, wakes the tasks
    /// that wait on their sockets alone.
    pub fn set_phase(&self, sender: &watch::Sender<Phase>, phase: Phase) {
        // Only forward, whatever the callers' order.
        self.phase_now.fetch_max(phase as u8, Ordering::AcqRel);
        sender.send_if_modified(|now| {
            let forward = phase > *now;
            if forward {
                *now = phase;
            }
            forward
        });
        if phase == Phase::ForceQuit {
            self.quit_wakers.wake_all();
        }
    }

    /// Ready once the worker force-quits, for a task that waits on something else: its
    /// waker is left with [`QuitWakers`] through `registration` (once per task, not per wait).
    pub fn force_quit<'r>(
        &'r self,
        registration: &'r mut QuitRegistration<'_>,
    ) -> impl Future<Output = ()> + 'r {
        std::future::poll_fn(move |cx| {
            registration.register(cx.waker());
            if self.phase() == Phase::ForceQuit {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Counters of one server, as `g3proxy-ctl server NAME status` and the metrics show them.
#[derive(Default)]
pub struct ServerCounters {
    pub name: String,
    /// As g3 names the type in task logs (`HttpProxy`, `SocksProxy`, ...).
    pub server_type: String,
    /// Where this server's task logs go, and whether tasks also log as they start and once
    /// connected (`flush_task_log_on_created` / `_connected`).
    pub task_log: Option<Arc<crate::log::Logger>>,
    pub log_on_created: bool,
    pub log_on_connected: bool,
    /// `task_log_flush_interval`: a `Periodic` event this often while a tunnel relays.
    pub log_interval: Option<std::time::Duration>,
    pub total_conn: AtomicU64,
    pub total_task: AtomicU64,
    pub alive: AtomicU64,
    /// Bytes from clients and to clients, counted as each task ends: over TCP, and in UDP
    /// datagrams (with their count).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub udp_bytes_in: AtomicU64,
    pub udp_bytes_out: AtomicU64,
    pub udp_packets_in: AtomicU64,
    pub udp_packets_out: AtomicU64,
    /// Tasks refused: a login that failed, a destination a user may not reach, a blocked
    /// user (g3's `server.forbidden.*`).
    pub auth_failed: AtomicU64,
    pub dest_denied: AtomicU64,
    pub user_blocked: AtomicU64,
    /// g3's `listen.*`: sockets accepting for this server, connections accepted, dropped by
    /// the ingress filter, given up in their early negotiation (a PROXY header or a TLS
    /// handshake that did not come in time), and accept errors.
    pub listen_instances: AtomicU64,
    pub listen_accepted: AtomicU64,
    pub listen_dropped: AtomicU64,
    pub listen_timeout: AtomicU64,
    pub listen_failed: AtomicU64,
}

impl ServerCounters {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(ServerCounters {
            name: name.to_string(),
            ..Default::default()
        })
    }

    /// The counters of a server of config type `type_name` whose tasks log to `task_log`.
    pub fn logged(
        name: &str,
        type_name: &str,
        task_log: Option<Arc<crate::log::Logger>>,
        common: &g3proxy_shared::config::servers::ServerCommon,
    ) -> Arc<Self> {
        let server_type = crate::log::g3_type_name(type_name);
        // No ticking tunnels for events nobody writes.
        let log_interval = common
            .task_log_flush_interval
            .filter(|_| task_log.is_some())
            .map(|d| d.0);
        Arc::new(ServerCounters {
            name: name.to_string(),
            server_type,
            task_log,
            log_on_created: common.flush_task_log_on_created,
            log_on_connected: common.flush_task_log_on_connected,
            log_interval,
            ..Default::default()
        })
    }
}

/// What a task is, as the fleet view counts them: a draining generation shows what it still
/// carries (long tunnels, or requests about to end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A connection a port has not handed on yet, or one `dummy_close` takes.
    Other,
    Http,
    Connect,
    SocksTcp,
    SocksUdp,
    Stream,
}

impl TaskKind {
    const ALL: [TaskKind; 6] = [
        TaskKind::Other,
        TaskKind::Http,
        TaskKind::Connect,
        TaskKind::SocksTcp,
        TaskKind::SocksUdp,
        TaskKind::Stream,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TaskKind::Other => "other",
            TaskKind::Http => "http",
            TaskKind::Connect => "connect",
            TaskKind::SocksTcp => "socks_tcp",
            TaskKind::SocksUdp => "socks_udp",
            TaskKind::Stream => "stream",
        }
    }
}

/// Every live task of the worker, so draining knows when it is done and status can report the
/// oldest task and the tasks of each kind. One short lock per connection, which is nothing
/// next to its syscalls.
#[derive(Default)]
pub struct TaskRegistry {
    next_id: AtomicU64,
    started: Mutex<BTreeMap<u64, Instant>>,
    changed: Notify,
    by_kind: [AtomicU64; TaskKind::ALL.len()],
}

impl TaskRegistry {
    pub fn register(self: &Arc<Self>, server: &Arc<ServerCounters>, kind: TaskKind) -> TaskGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Instant::now());
        server.total_task.fetch_add(1, Ordering::Relaxed);
        server.alive.fetch_add(1, Ordering::Relaxed);
        self.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        TaskGuard {
            id,
            registry: self.clone(),
            server: server.clone(),
            kind,
        }
    }

    /// Live tasks of each kind that has any.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        TaskKind::ALL
            .iter()
            .map(|kind| (kind, self.by_kind[*kind as usize].load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| (kind.label().to_string(), count))
            .collect()
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
    kind: TaskKind,
}

impl TaskGuard {
    /// The task turned out to be of `kind` (a CONNECT on an HTTP proxy, a SOCKS UDP relay).
    pub fn set_kind(&mut self, kind: TaskKind) {
        if kind != self.kind {
            self.registry.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
            self.registry.by_kind[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
            self.kind = kind;
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn kind(&self) -> TaskKind {
        self.kind
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
        self.registry.by_kind[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
        self.registry.changed.notify_waiters();
    }
}
