//! The ctl end of the control socket: one framed, versioned request and its answer.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse};
use g3proxy_shared::ipc::{self, fd_passing, trust};

/// Reloads wait for a whole generation to start, so answers may take a while.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

pub fn ask(socket: &Path, request: &CtlRequest) -> anyhow::Result<CtlResponse> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    trust::check_peer(&stream).with_context(|| format!("{}", socket.display()))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    fd_passing::send_frame(&stream, &ipc::encode(request)?, &[])?;
    let mut buffer = Vec::new();
    let (payload, _) = fd_passing::recv_frame(&stream, &mut buffer)?
        .context("the supervisor closed the connection without answering")?;
    Ok(ipc::decode(&payload)?)
}
