//! One worker process: spawn it with one end of a socketpair, send its start message with the
//! listeners attached, then turn its messages and its exit into supervisor events.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use g3proxy_shared::ipc::worker::{FromWorker, ToWorker, WorkerStart};
use g3proxy_shared::ipc::{self, fd_passing, read_frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::event::{Event, WorkerId};

pub struct WorkerProcess {
    pub pid: u32,
    sender: mpsc::UnboundedSender<ToWorker>,
    writer: tokio::task::JoinHandle<()>,
}

impl WorkerProcess {
    /// Closes our end of the link after every queued message went out; the worker then sees
    /// the end of stream (and knows whether we said we were leaving).
    pub async fn close_link(self) {
        drop(self.sender);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.writer).await;
    }

    pub fn send(&self, message: ToWorker) {
        let _ = self.sender.send(message);
    }

    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Starts a worker from `binary` and hands it `start` and `listener_fds`.
pub async fn spawn(
    binary: &Path,
    id: WorkerId,
    start: WorkerStart,
    listener_fds: Vec<OwnedFd>,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<WorkerProcess> {
    let (ours, theirs) = StdUnixStream::pair().context("socketpair")?;
    let their_fd: RawFd = theirs.as_raw_fd();
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("--ipc-fd")
        .arg(their_fd.to_string())
        .stdin(Stdio::null())
        // Its own process group: a terminal's Ctrl-C goes to the supervisor, which decides.
        .process_group(0)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES");
    // Safety: between fork and exec we only clear FD_CLOEXEC with fcntl, which is
    // async-signal-safe, so the child inherits its end of the socketpair.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(their_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(their_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    drop(theirs);
    let pid = child.id().unwrap_or_default();

    let frame = ipc::encode(&ToWorker::Start(Box::new(start)))?;
    // A binary that never reads its start message must not hold the supervisor up.
    ours.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
    let ours = tokio::task::spawn_blocking(move || -> std::io::Result<StdUnixStream> {
        let raw: Vec<RawFd> = listener_fds.iter().map(|fd| fd.as_raw_fd()).collect();
        fd_passing::send_frame(&ours, &frame, &raw)?;
        Ok(ours)
    })
    .await
    .context("start message")?
    .context("sending the start message")?;
    ours.set_nonblocking(true)?;
    let (mut reader, mut writer) = tokio::net::UnixStream::from_std(ours)?.into_split();

    let link_events = events.clone();
    tokio::spawn(async move {
        let mut buffer = Vec::new();
        while let Ok(Some(payload)) = read_frame(&mut reader, &mut buffer).await {
            match ipc::decode::<FromWorker>(&payload) {
                Ok(message) => {
                    let _ = link_events.send(Event::Worker { id, pid, message });
                }
                Err(e) => eprintln!("g3proxy: warn: worker {pid}: {e}"),
            }
        }
    });
    let (sender, mut outbox) = mpsc::unbounded_channel::<ToWorker>();
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            let Ok(frame) = ipc::encode(&message) else {
                continue;
            };
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let _ = events.send(Event::WorkerExited { id, pid, status });
    });
    Ok(WorkerProcess {
        pid,
        sender,
        writer,
    })
}
