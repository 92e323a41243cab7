//! Supervisor ↔ worker messages, over the socketpair a worker is spawned with, and over a
//! worker's own control socket (used by a successor supervisor to adopt workers left behind).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigBundle;

/// One listening socket handed to a worker. The descriptors ride in the same frame as
/// SCM_RIGHTS, in the order of these entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEntry {
    pub server: String,
    pub address: SocketAddr,
    /// With `listen_in_worker`, the worker slot this SO_REUSEPORT socket belongs to.
    pub slot: Option<usize>,
    /// Which of the address's `instance` sockets this is.
    pub instance: usize,
    /// Bound with IP_TRANSPARENT (`tcp_tproxy`). Absent from older peers: not transparent.
    #[serde(default)]
    pub transparent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStart {
    pub generation: u64,
    pub worker_index: usize,
    pub worker_count: usize,
    pub group: String,
    pub control_dir: PathBuf,
    pub config: ConfigBundle,
    pub listeners: Vec<ListenerEntry>,
    pub cpus: Option<Vec<usize>>,
    pub runtime: RuntimeTuning,
    /// Process-log verbosity, as the supervisor's `-v` count: 0 warn, 1 info, 2 debug.
    pub verbosity: u8,
    /// Where the process log goes (`g3proxy -d`: syslog, `-s`: journald, else stderr).
    #[serde(default)]
    pub process_log: crate::logs::ProcessLogSink,
    /// `g3proxy --panic-quit`: a panic in any task ends the worker (its supervisor restarts
    /// it), instead of ending only that task.
    #[serde(default)]
    pub panic_quit: bool,
    /// The users last published to each user group (`publish-user`).
    #[serde(default)]
    pub published_users: std::collections::BTreeMap<String, Published>,
    /// What was last published to each float escaper (`escaper NAME publish`).
    #[serde(default)]
    pub published_escapers: std::collections::BTreeMap<String, Published>,
}

/// What was published to a module: its JSON text (a user group's array of users, a float
/// escaper's binds or peers), and an order between publishes (a worker may get the same one
/// twice, and two quick ones by two paths out of order; it keeps the latest).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub sequence: u64,
    /// Named `users` on the wire and in the saved record, as when only users were published.
    #[serde(rename = "users")]
    pub text: String,
}

/// Without the text, which holds tokens and peers' passwords.
impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Published({}, {} bytes)", self.sequence, self.text.len())
    }
}

/// How a worker builds its tokio runtime, from `worker` (or, without it, `runtime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeTuning {
    /// 1 means a current-thread runtime.
    pub threads: usize,
    pub thread_name: Option<String>,
    pub thread_stack_size: Option<usize>,
    pub max_io_events_per_tick: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    Start(Box<WorkerStart>),
    /// Stop accepting now; finish running tasks; exit when none is left or at the deadline.
    Drain {
        deadline_unix_secs: u64,
    },
    /// Close every task now and exit.
    ForceQuit,
    Status {
        id: u64,
    },
    /// The supervisor is going away on purpose (systemd restart): keep accepting, and drain
    /// if no successor adopts this worker within `offline_delay_millis`.
    SupervisorLeaving {
        offline_delay_millis: u64,
    },
    /// From a successor supervisor: the listeners this worker holds, with descriptors.
    ShareListeners {
        id: u64,
    },
    /// Users published to `group`: they replace its dynamic users.
    PublishUsers {
        group: String,
        published: Published,
    },
    /// What was published to a float escaper: it replaces the escaper's binds or peers.
    PublishEscaper {
        escaper: String,
        published: Published,
    },
    /// A lookup through resolver `name` (answered with `Resolved`).
    QueryResolver {
        id: u64,
        name: String,
        domain: String,
        strategy: crate::config::escapers::QueryStrategy,
        resolution_delay_ms: u64,
    },
    /// The names of `group`'s dynamic users (answered with `UserNames`).
    ListDynamicUsers {
        id: u64,
        group: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Serving,
    Draining,
    /// Its supervisor is gone; still accepting until a successor takes over.
    Orphaned,
    /// Did not answer a status request.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    pub name: String,
    pub online: bool,
    pub alive_tasks: u64,
    pub total_conn: u64,
    pub total_task: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub pid: u32,
    pub generation: u64,
    pub worker_index: usize,
    pub version: String,
    pub state: WorkerState,
    pub alive_tasks: u64,
    /// Live tasks by kind (`http`, `connect`, `socks_tcp`, `socks_udp`, `stream`, `other`),
    /// kinds without any left out.
    #[serde(default)]
    pub tasks_by_kind: std::collections::BTreeMap<String, u64>,
    pub oldest_task_age_secs: Option<u64>,
    pub drain_deadline_unix_secs: Option<u64>,
    pub servers: Vec<ServerStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    Ready {
        pid: u32,
        version: String,
    },
    StartFailed {
        error: String,
    },
    Status {
        id: u64,
        status: WorkerStatus,
    },
    /// Answer to `PublishUsers` and `PublishEscaper` over the control socket: what was
    /// published is in use.
    Applied {
        id: u64,
    },
    /// Answer to `ListDynamicUsers`; `None` when the worker has no such group.
    UserNames {
        id: u64,
        names: Option<Vec<String>>,
    },
    /// Answer to `QueryResolver`: the addresses, or why there are none; `None` when the
    /// worker has no such resolver.
    Resolved {
        id: u64,
        answer: Option<Result<Vec<String>, String>>,
    },
    /// Answer to `ShareListeners`; the descriptors ride in the same frame.
    Listeners {
        id: u64,
        entries: Vec<ListenerEntry>,
        worker_count: usize,
    },
}

/// A worker's own control socket, through which a successor supervisor adopts it:
/// `<control_dir>/<group>_worker_<pid>.sock`.
pub fn worker_socket_path(control_dir: &std::path::Path, group: &str, pid: u32) -> PathBuf {
    control_dir.join(format!("{group}_worker_{pid}.sock"))
}

/// The pid in a worker control socket's file name, if `file_name` is one of `group`'s.
pub fn parse_worker_socket_name(file_name: &str, group: &str) -> Option<u32> {
    file_name
        .strip_prefix(group)?
        .strip_prefix("_worker_")?
        .strip_suffix(".sock")?
        .parse()
        .ok()
}
