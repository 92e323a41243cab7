//! The worker's own control socket (`<group>_worker_<pid>.sock`, mode 0600). A successor
//! supervisor uses it to find workers left behind, take copies of their listeners, read their
//! status and tell them to drain. One request per connection, answered by the lifecycle loop.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use g3proxy_shared::ipc::worker::{FromWorker, ToWorker};
use g3proxy_shared::ipc::{self, fd_passing, read_frame, trust};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use tracing::warn;

pub struct ControlRequest {
    pub message: ToWorker,
    pub reply: oneshot::Sender<(Option<FromWorker>, Vec<OwnedFd>)>,
}

pub fn serve(path: &Path, requests: mpsc::Sender<ControlRequest>) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if let Err(refused) = trust::check_peer(&stream) {
                        warn!("control socket: {refused}");
                        continue;
                    }
                    tokio::spawn(handle(stream, requests.clone()));
                }
                Err(e) => {
                    warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn handle(mut stream: UnixStream, requests: mpsc::Sender<ControlRequest>) {
    let mut buffer = Vec::new();
    // A peer that connects and says nothing is dropped.
    let request = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read_frame(&mut stream, &mut buffer),
    );
    let Ok(Ok(Some(payload))) = request.await else {
        return;
    };
    let message = match ipc::decode::<ToWorker>(&payload) {
        Ok(message) => message,
        Err(e) => {
            warn!("control socket: {e}");
            return;
        }
    };
    let (reply, answer) = oneshot::channel();
    if requests
        .send(ControlRequest { message, reply })
        .await
        .is_err()
    {
        return;
    }
    let Ok((Some(answer), fds)) = answer.await else {
        return;
    };
    let Ok(frame) = ipc::encode(&answer) else {
        return;
    };
    // Descriptors need sendmsg on a blocking socket; the answer is small and local.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let _ = tokio::task::spawn_blocking(move || {
        let _ = stream.set_nonblocking(false);
        let raw: Vec<_> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let _ = fd_passing::send_frame(&stream, &frame, &raw);
    })
    .await;
}
