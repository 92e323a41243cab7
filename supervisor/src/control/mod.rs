//! The control sockets: `<group>_<pid>.sock` (this supervisor) and `<group>.sock` (the group's
//! current supervisor), mode 0600. Each connection carries framed, versioned requests; the
//! main loop answers them, and fleet and server status are completed here by asking the
//! workers directly so the main loop never waits on a worker.

mod status;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse};
use g3proxy_shared::ipc::{self, read_frame, trust};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::{CtlReply, Event};
use tracing::warn;

/// How long a control connection may stay silent (g3proxy's `recv_timeout`).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const HANDOFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

pub fn unique_socket_path(control_dir: &Path, group: &str, pid: u32) -> PathBuf {
    control_dir.join(format!("{group}_{pid}.sock"))
}

pub fn group_socket_path(control_dir: &Path, group: &str) -> PathBuf {
    let name = if group.is_empty() {
        "_".to_string()
    } else {
        group.to_string()
    };
    control_dir.join(format!("{name}.sock"))
}

/// Serves one control socket at `path`, replacing a stale file there.
pub fn serve(
    path: &Path,
    events: mpsc::UnboundedSender<Event>,
    control_dir: PathBuf,
    group: String,
) -> io::Result<JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(refused) = trust::check_peer(&stream) {
                        warn!("control socket: {refused}");
                        continue;
                    }
                    tokio::spawn(connection(
                        stream,
                        events.clone(),
                        control_dir.clone(),
                        group.clone(),
                    ));
                }
                Err(e) => {
                    warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn connection(
    mut stream: UnixStream,
    events: mpsc::UnboundedSender<Event>,
    control_dir: PathBuf,
    group: String,
) {
    let mut buffer = Vec::new();
    let mut handing_off = false;
    loop {
        // An idle control client is dropped; a successor mid-handoff waits as long as its
        // generation takes to start.
        let wait = if handing_off {
            HANDOFF_TIMEOUT
        } else {
            REQUEST_TIMEOUT
        };
        let payload = match tokio::time::timeout(wait, read_frame(&mut stream, &mut buffer)).await {
            Ok(Ok(Some(payload))) => payload,
            _ => break,
        };
        let request = match ipc::decode::<CtlRequest>(&payload) {
            Ok(request) => request,
            Err(e) => {
                if send(&mut stream, &CtlResponse::Error(e.to_string()), Vec::new())
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        match &request {
            CtlRequest::HandoffBegin { .. } => handing_off = true,
            CtlRequest::HandoffCommit | CtlRequest::HandoffAbort { .. } => handing_off = false,
            _ => {}
        }
        let (reply, answer) = oneshot::channel();
        if events.send(Event::Ctl { request, reply }).is_err() {
            break;
        }
        let mut exit_after = false;
        let (response, fds) = match answer.await {
            Ok(CtlReply::Done(response, fds)) => (response, fds),
            Ok(CtlReply::DoneThenExit(response)) => {
                exit_after = true;
                (response, Vec::new())
            }
            Ok(CtlReply::QueryWorkers(generations, query)) => (
                status::answer(&control_dir, &group, generations, query).await,
                Vec::new(),
            ),
            Err(_) => (
                CtlResponse::Error("the supervisor is going away".into()),
                Vec::new(),
            ),
        };
        let sent = send(&mut stream, &response, fds).await;
        if exit_after {
            let _ = stream.shutdown().await;
            let _ = events.send(Event::Exit);
        }
        if sent.is_err() {
            break;
        }
    }
    // A successor that vanished mid-handoff failed: the old supervisor serves on.
    if handing_off {
        let (reply, _) = oneshot::channel();
        let _ = events.send(Event::Ctl {
            request: CtlRequest::HandoffAbort {
                reason: "successor disconnected".into(),
            },
            reply,
        });
    }
}

/// Writes one response; descriptors go with its first bytes.
async fn send(
    stream: &mut UnixStream,
    response: &CtlResponse,
    fds: Vec<OwnedFd>,
) -> io::Result<()> {
    let frame = ipc::encode(response).map_err(io::Error::other)?;
    let mut sent = 0;
    if !fds.is_empty() {
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        sent = loop {
            stream.writable().await?;
            let attempt = stream.try_io(Interest::WRITABLE, || {
                let rights = [ControlMessage::ScmRights(&raw)];
                sendmsg::<()>(
                    stream.as_raw_fd(),
                    &[io::IoSlice::new(&frame)],
                    &rights,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            });
            match attempt {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
    }
    stream.write_all(&frame[sent..]).await
}
