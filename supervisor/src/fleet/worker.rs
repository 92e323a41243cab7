//! One worker process: spawn it with one end of a socketpair, send its start message with the
//! listeners attached, then turn its messages and its exit into supervisor events.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use g3proxy_shared::ipc::worker::{FromWorker, ToWorker, WorkerStart};
use g3proxy_shared::ipc::{self, fd_passing, read_frame};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::event::{Event, WorkerId};

pub struct WorkerProcess {
    pub pid: u32,
    /// Signals go through this, never through the pid, which the kernel may give to another
    /// process once the worker was reaped.
    pidfd: Option<OwnedFd>,
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
        let Some(pidfd) = &self.pidfd else {
            return;
        };
        // Safety: a plain syscall on a descriptor we own; a process already reaped gives
        // ESRCH, which is what we want.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}

/// A pidfd for a child we have not reaped yet, so its pid still names it.
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    // Safety: pidfd_open returns a new descriptor we then own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The worker binary of one generation, opened once: a worker restarted after a crash runs
/// the same file as its siblings even if a package upgrade replaced the one on disk.
pub struct PinnedBinary {
    pub path: PathBuf,
    file: std::fs::File,
}

impl PinnedBinary {
    pub fn open(path: &Path) -> anyhow::Result<PinnedBinary> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the worker binary {}", path.display()))?;
        Ok(PinnedBinary {
            path: path.to_path_buf(),
            file,
        })
    }

    /// A command that executes the pinned file through its descriptor where /proc is there,
    /// else by path.
    fn command(&self) -> tokio::process::Command {
        let by_descriptor = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if by_descriptor.exists() {
            let mut command = tokio::process::Command::new(by_descriptor);
            command.arg0(&self.path);
            command
        } else {
            tokio::process::Command::new(&self.path)
        }
    }
}

/// Starts a worker from `binary` and hands it `start` and `listener_fds`.
pub async fn spawn(
    binary: &PinnedBinary,
    id: WorkerId,
    start: WorkerStart,
    listener_fds: Vec<OwnedFd>,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<WorkerProcess> {
    let (ours, theirs) = StdUnixStream::pair().context("socketpair")?;
    let their_fd: RawFd = theirs.as_raw_fd();
    let mut command = binary.command();
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
    // The child inherits its end of the socketpair, and the pinned binary stays open across
    // exec so that an interpreter (a `#!` worker) can still read it by its /proc path.
    let inherited = [their_fd, binary.file.as_raw_fd()];
    // Safety: between fork and exec we only clear FD_CLOEXEC with fcntl, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            for fd in inherited {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.path.display()))?;
    drop(theirs);
    // Not reaped until `child.wait()` below, so the pid is still this child's.
    let pid = child
        .id()
        .context("the worker exited before it could be watched")?;
    let pidfd = open_pidfd(pid);

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
                Err(e) => tracing::warn!("worker {pid}: {e}"),
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
        pidfd,
        sender,
        writer,
    })
}
