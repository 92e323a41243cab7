//! Control socket messages: `g3proxy-ctl` → supervisor, and a successor supervisor → the one
//! it replaces (the outside-systemd handoff).

use serde::{Deserialize, Serialize};

use super::worker::{ListenerEntry, ServerStats, WorkerState};
use crate::config::escapers::QueryStrategy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    Server,
    Escaper,
    Resolver,
    UserGroup,
    Auditor,
}

impl ModuleKind {
    /// As config sections and ctl commands name it.
    pub fn label(self) -> &'static str {
        match self {
            ModuleKind::Server => "server",
            ModuleKind::Escaper => "escaper",
            ModuleKind::Resolver => "resolver",
            ModuleKind::UserGroup => "user-group",
            ModuleKind::Auditor => "auditor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlRequest {
    Version,
    Offline,
    CancelShutdown,
    ForceQuit {
        server: String,
    },
    ForceQuitAll,
    List {
        kind: ModuleKind,
    },
    ServerStatus {
        name: String,
    },
    Fleet,
    Reload,
    /// `reload-server NAME` and its kin: a reload that names the entry it is for.
    ReloadEntry {
        kind: ModuleKind,
        name: String,
    },
    Upgrade,
    /// `user-group NAME list-static-user`.
    ListStaticUsers {
        group: String,
    },
    /// `user-group NAME list-dynamic-user`: as a worker of the serving generation has them.
    ListDynamicUsers {
        group: String,
    },
    /// `user-group NAME publish-user FILE`: the file's JSON array of users, which replaces
    /// the group's dynamic users in every worker, now and in later generations.
    PublishUsers {
        group: String,
        users: String,
    },
    /// `escaper NAME publish DATA`: a float escaper's new binds or peers, in use by every
    /// worker, now and in later generations.
    PublishEscaper {
        escaper: String,
        data: String,
    },
    /// `resolver NAME query DOMAIN`: a lookup through the resolver of a serving worker, its
    /// cache included.
    QueryResolver {
        name: String,
        domain: String,
        strategy: QueryStrategy,
        resolution_delay_ms: u64,
    },
    /// A successor supervisor asks for every listener (answered with `HandoffListeners`).
    HandoffBegin {
        successor_pid: u32,
    },
    /// The successor's generation is ready: drain ours and leave.
    HandoffCommit,
    /// The successor failed: keep serving as before.
    HandoffAbort {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub online: bool,
    pub alive_tasks: u64,
    pub total_conn: u64,
    pub total_task: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub pid: u32,
    pub index: usize,
    pub state: WorkerState,
    pub alive_tasks: u64,
    /// Live tasks by kind, kinds without any left out.
    #[serde(default)]
    pub tasks_by_kind: std::collections::BTreeMap<String, u64>,
    pub oldest_task_age_secs: Option<u64>,
    pub servers: Vec<ServerStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRow {
    pub generation: u64,
    /// `starting`, `current`, `draining`, or `adopted` for workers a predecessor left.
    pub state: String,
    pub binary: String,
    pub version: String,
    pub drain_deadline_unix_secs: Option<u64>,
    pub workers: Vec<WorkerRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub group: String,
    pub supervisor_pid: u32,
    pub supervisor_version: String,
    pub state: String,
    pub generations: Vec<GenerationRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlResponse {
    /// g3proxy-ctl prints `notice: <text>`.
    Notice(String),
    Version(String),
    Names(Vec<String>),
    /// Printed as it is, and still a success (a lookup's failure, as g3proxy-ctl shows it).
    Text(String),
    ServerStatus(ServerStatus),
    Fleet(FleetStatus),
    Error(String),
    /// Every listener of the old supervisor; descriptors ride in the same frame.
    HandoffListeners {
        entries: Vec<ListenerEntry>,
        worker_pids: Vec<u32>,
    },
}
