//! The closed set of things the supervisor reacts to. Every source (signals, the control
//! sockets, worker links, child exits, timers) turns what it sees into one [`Event`] on one
//! channel, and [`crate::supervisor::Supervisor::handle`] is the only place state changes.

use std::os::fd::OwnedFd;

use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse};
use g3proxy_shared::ipc::worker::{FromWorker, ToWorker};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerId {
    pub generation: u64,
    pub index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    Reload,
    Offline,
    ForceQuit,
}

/// A worker of a snapshot, for the control connection to query on its own.
#[derive(Debug, Clone)]
pub struct SnapshotWorker {
    pub index: usize,
    pub pid: u32,
}

#[derive(Debug, Clone)]
pub struct SnapshotGeneration {
    pub generation: u64,
    pub state: String,
    pub binary: String,
    pub version: String,
    pub drain_deadline_unix_secs: Option<u64>,
    pub workers: Vec<SnapshotWorker>,
}

#[derive(Debug, Clone)]
pub enum Query {
    Fleet {
        state: String,
    },
    ServerStatus {
        name: String,
    },
    /// A publish (users to a user group, binds or peers to a float escaper), answered once
    /// every worker uses it.
    Publish(ToWorker),
    /// A user group's dynamic users, as the first worker that answers has them.
    DynamicUsers {
        group: String,
    },
    /// A lookup through a resolver of the first worker that answers.
    Resolve(ToWorker),
}

pub enum CtlReply {
    Done(CtlResponse, Vec<OwnedFd>),
    /// Answer, then let the supervisor exit (`offline` under systemd): the answer must reach
    /// the operator before the process is gone.
    DoneThenExit(CtlResponse),
    /// Answered by asking the workers themselves, off the main loop.
    QueryWorkers(Vec<SnapshotGeneration>, Query),
}

impl CtlReply {
    pub fn done(response: CtlResponse) -> Self {
        CtlReply::Done(response, Vec::new())
    }

    pub fn error(message: impl Into<String>) -> Self {
        CtlReply::done(CtlResponse::Error(message.into()))
    }

    pub fn success() -> Self {
        CtlReply::done(CtlResponse::Notice("success".into()))
    }
}

pub enum Event {
    Signal(SignalAction),
    Ctl {
        request: CtlRequest,
        reply: oneshot::Sender<CtlReply>,
    },
    Worker {
        id: WorkerId,
        pid: u32,
        message: FromWorker,
    },
    WorkerExited {
        id: WorkerId,
        pid: u32,
        status: String,
    },
    RestartWorker {
        id: WorkerId,
    },
    ReadyTimeout {
        generation: u64,
    },
    /// A draining generation's deadline plus `task_quit_timeout` has passed.
    DrainBackstop {
        generation: u64,
    },
    OfflineTimeout {
        epoch: u64,
    },
    /// The first generation is up (or failed): finish taking over from any predecessor.
    Started(Result<(), String>),
    /// Give back the shared user counts of workers that died unwatched (adopted ones).
    ReclaimUserLimits,
    /// Emit the fleet metrics (every `stat.emit_interval`).
    EmitFleetMetrics,
    /// Leave the event loop now.
    Exit,
}
