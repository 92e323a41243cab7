//! Messages between g3proxy processes: supervisor ↔ worker ([`worker`]) and ctl or a successor
//! supervisor → supervisor ([`control`]).
//!
//! Each message travels as one `proto::frame` holding JSON `{"version": N, "message": ...}`.
//! A peer that cannot read a message answers with an error naming both versions instead of
//! dropping the connection, so an old supervisor and a new ctl still tell the operator what is
//! wrong. Listening sockets ride along as SCM_RIGHTS on the frame that lists them.

pub mod control;
pub mod fd_passing;
pub mod trust;
pub mod worker;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped when a message changes shape incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    version: u32,
    message: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    version: u32,
    message: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("malformed ipc message: {0}")]
    Malformed(String),
    #[error(
        "peer speaks ipc protocol {peer}, we speak {ours}, and its message is unknown to us: {detail}"
    )]
    Unsupported {
        peer: u32,
        ours: u32,
        detail: String,
    },
    #[error("{0}")]
    Frame(#[from] g3proxy_proto::frame::FrameError),
}

/// Encodes `message` as one complete frame.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, IpcError> {
    let payload = serde_json::to_vec(&EnvelopeOut {
        version: PROTOCOL_VERSION,
        message,
    })
    .map_err(|e| IpcError::Malformed(e.to_string()))?;
    let mut frame = Vec::with_capacity(payload.len() + 4);
    g3proxy_proto::frame::encode(&payload, &mut frame)?;
    Ok(frame)
}

/// Decodes the payload of one frame.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, IpcError> {
    let envelope: EnvelopeIn =
        serde_json::from_slice(payload).map_err(|e| IpcError::Malformed(e.to_string()))?;
    serde_json::from_value(envelope.message).map_err(|e| IpcError::Unsupported {
        peer: envelope.version,
        ours: PROTOCOL_VERSION,
        detail: e.to_string(),
    })
}

/// Reads one frame from an async stream into `buffer`; `None` at a clean end of stream.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    use g3proxy_proto::{Parsed, frame};
    use tokio::io::AsyncReadExt;
    loop {
        if let Parsed::Complete(payload, used) =
            frame::decode(buffer).map_err(std::io::Error::other)?
        {
            let payload = payload.to_vec();
            buffer.drain(..used);
            return Ok(Some(payload));
        }
        buffer.reserve(16 * 1024);
        if reader.read_buf(buffer).await? == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "peer closed mid-frame",
                ))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::{CtlRequest, ModuleKind};

    #[test]
    fn round_trip_and_unknown_messages() {
        let frame = encode(&CtlRequest::List {
            kind: ModuleKind::Server,
        })
        .unwrap();
        let payload = &frame[4..];
        assert_eq!(
            decode::<CtlRequest>(payload).unwrap(),
            CtlRequest::List {
                kind: ModuleKind::Server
            }
        );

        let future = br#"{"version": 9, "message": {"teleport": {}}}"#;
        let error = decode::<CtlRequest>(future).unwrap_err().to_string();
        assert!(error.contains("protocol 9, we speak 1"), "{error}");
    }
}
