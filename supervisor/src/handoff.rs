//! Taking over from whoever served this group before us, on each of the three paths:
//! a live predecessor handing its listeners over its group control socket (outside systemd),
//! systemd returning them as `LISTEN_FDS` (see [`crate::systemd`]), or workers orphaned by a
//! supervisor that died, which share their listeners over their own control sockets. Also
//! the client side of worker control sockets, used for status and to drain adopted workers.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse};
use g3proxy_shared::ipc::worker::{
    FromWorker, ToWorker, WorkerStatus, parse_worker_socket_name, worker_socket_path,
};
use g3proxy_shared::ipc::{self, fd_passing, trust};

use crate::control::group_socket_path;
use crate::listeners::ListenerKey;
use tracing::{info, warn};

const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One blocking request/answer exchange on a fresh connection.
fn exchange<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    stream: &UnixStream,
    request: &Q,
) -> anyhow::Result<(A, Vec<OwnedFd>)> {
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    fd_passing::send_frame(stream, &ipc::encode(request)?, &[])?;
    let mut buffer = Vec::new();
    let (payload, fds) = fd_passing::recv_frame(stream, &mut buffer)?
        .ok_or_else(|| anyhow::anyhow!("peer closed without answering"))?;
    Ok((ipc::decode(&payload)?, fds))
}

/// The supervisor serving the group when we started, while it hands over to us.
pub struct Predecessor {
    stream: UnixStream,
    pub listeners: Vec<(ListenerKey, OwnedFd)>,
    pub worker_pids: Vec<u32>,
}

impl Predecessor {
    /// Asks the group's current supervisor for its listeners; `None` if nobody serves it.
    pub fn connect(control_dir: &Path, group: &str) -> anyhow::Result<Option<Predecessor>> {
        let path = group_socket_path(control_dir, group);
        let stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Left by a supervisor that died: nobody to hand over from.
                let _ = std::fs::remove_file(&path);
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach {}", path.display())),
        };
        // Whoever answers on the group socket gets a share of our clients: it must be one of us.
        trust::check_peer(&stream).with_context(|| {
            format!(
                "not taking listeners from {}; remove it if nothing of ours serves there",
                path.display()
            )
        })?;
        let request = CtlRequest::HandoffBegin {
            successor_pid: std::process::id(),
        };
        let (answer, fds) = exchange::<_, CtlResponse>(&stream, &request)
            .context("handoff with the running supervisor")?;
        match answer {
            CtlResponse::HandoffListeners {
                entries,
                worker_pids,
            } => {
                let listeners = entries.iter().map(ListenerKey::of).zip(fds).collect();
                Ok(Some(Predecessor {
                    stream,
                    listeners,
                    worker_pids,
                }))
            }
            CtlResponse::Error(reason) => {
                anyhow::bail!("the running supervisor refused the handoff: {reason}")
            }
            other => anyhow::bail!("unexpected handoff answer {other:?}"),
        }
    }

    /// Our generation serves: the predecessor drains and leaves.
    pub fn commit(self) -> anyhow::Result<()> {
        exchange::<_, CtlResponse>(&self.stream, &CtlRequest::HandoffCommit).map(|_| ())
    }

    pub fn abort(self, reason: String) {
        let _ = exchange::<_, CtlResponse>(&self.stream, &CtlRequest::HandoffAbort { reason });
    }
}

/// Pids of this group's workers that have a control socket in `control_dir`.
pub fn worker_pids_in(control_dir: &Path, group: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(control_dir) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_worker_socket_name(&e.file_name().to_string_lossy(), group))
        .collect();
    pids.sort();
    pids
}

fn worker_request_blocking(path: PathBuf, request: ToWorker) -> Option<(FromWorker, Vec<OwnedFd>)> {
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                // The worker is gone and left its socket file behind.
                let _ = std::fs::remove_file(&path);
            }
            return None;
        }
    };
    if let Err(refused) = trust::check_peer(&stream) {
        warn!("worker socket {}: {refused}", path.display());
        return None;
    }
    exchange(&stream, &request).ok()
}

async fn worker_request(
    control_dir: &Path,
    group: &str,
    pid: u32,
    request: ToWorker,
) -> Option<(FromWorker, Vec<OwnedFd>)> {
    let path = worker_socket_path(control_dir, group, pid);
    tokio::task::spawn_blocking(move || worker_request_blocking(path, request))
        .await
        .ok()
        .flatten()
}

/// One request to worker `pid` and its answer, for requests answered without descriptors.
pub async fn ask_worker(
    control_dir: &Path,
    group: &str,
    pid: u32,
    request: ToWorker,
) -> Option<FromWorker> {
    worker_request(control_dir, group, pid, request)
        .await
        .map(|(answer, _)| answer)
}

pub async fn query_status(control_dir: &Path, group: &str, pid: u32) -> Option<WorkerStatus> {
    match worker_request(control_dir, group, pid, ToWorker::Status { id: 0 }).await {
        Some((FromWorker::Status { status, .. }, _)) => Some(status),
        _ => None,
    }
}

/// The highest generation any live worker of the group runs, so a successor numbers on.
pub fn highest_generation(control_dir: &Path, group: &str) -> u64 {
    worker_pids_in(control_dir, group)
        .into_iter()
        .filter_map(|pid| {
            match worker_request_blocking(
                worker_socket_path(control_dir, group, pid),
                ToWorker::Status { id: 0 },
            ) {
                Some((FromWorker::Status { status, .. }, _)) => Some(status.generation),
                _ => None,
            }
        })
        .max()
        .unwrap_or(0)
}

/// Listeners held by workers a dead supervisor left behind, and those workers' pids.
pub fn adopt_orphans(control_dir: &Path, group: &str) -> (Vec<(ListenerKey, OwnedFd)>, Vec<u32>) {
    let mut listeners = Vec::new();
    let mut pids = Vec::new();
    for pid in worker_pids_in(control_dir, group) {
        let path = worker_socket_path(control_dir, group, pid);
        if let Some((FromWorker::Listeners { entries, .. }, fds)) =
            worker_request_blocking(path, ToWorker::ShareListeners { id: 0 })
        {
            info!("adopting worker {pid} and its {} listeners", entries.len());
            listeners.extend(entries.iter().map(ListenerKey::of).zip(fds));
            pids.push(pid);
        }
    }
    (listeners, pids)
}

/// Tells adopted workers to drain now that our generation serves.
pub async fn drain_adopted(
    control_dir: PathBuf,
    group: String,
    pids: Vec<u32>,
    deadline_unix_secs: u64,
) {
    for pid in pids {
        match worker_request(
            &control_dir,
            &group,
            pid,
            ToWorker::Drain { deadline_unix_secs },
        )
        .await
        {
            Some(_) => info!("adopted worker {pid} is draining"),
            // With nothing left to carry a worker drains and exits at once, sometimes before
            // its answer goes out; one still running did not get the request.
            None if worker_socket_path(&control_dir, &group, pid).exists() => {
                info!("adopted worker {pid} did not answer the drain request")
            }
            None => info!("adopted worker {pid} is gone"),
        }
    }
}

/// Whether process `pid` runs: it exists and is no zombie waiting to be reaped. (Its control
/// socket would tell a worker from a program that got a reused pid, but a starting worker
/// counts in the shared user limits before it makes its socket.)
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Tells `message` to the group's workers we did not spawn (`force-quit-all`, published
/// users reach those too).
pub async fn tell_foreign(control_dir: PathBuf, group: String, own: Vec<u32>, message: ToWorker) {
    for pid in worker_pids_in(&control_dir, &group)
        .into_iter()
        .filter(|pid| !own.contains(pid))
    {
        let _ = worker_request(&control_dir, &group, pid, message.clone()).await;
    }
}

/// A publish (`ToWorker::PublishUsers` or `PublishEscaper`), applied by worker `pid`
/// before this returns (or it did not answer).
pub async fn publish_to(control_dir: &Path, group: &str, pid: u32, publish: ToWorker) -> bool {
    matches!(
        worker_request(control_dir, group, pid, publish).await,
        Some((FromWorker::Applied { .. }, _))
    )
}

/// The dynamic user names of `group` in worker `pid`.
pub async fn query_dynamic_users(
    control_dir: &Path,
    group: &str,
    pid: u32,
    user_group: &str,
) -> Option<Option<Vec<String>>> {
    let request = ToWorker::ListDynamicUsers {
        id: 0,
        group: user_group.to_string(),
    };
    match worker_request(control_dir, group, pid, request).await {
        Some((FromWorker::UserNames { names, .. }, _)) => Some(names),
        _ => None,
    }
}
