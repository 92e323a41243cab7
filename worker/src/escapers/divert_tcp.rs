//! `type: divert_tcp`: each connection goes to a next hop (picked, resolved and raced as the
//! `proxy_*` escapers' are, `next_hop.rs`), and starts with a PROXY protocol v2 header: the
//! client and the address it came in at, then g3's TLVs: the target (`0xE0`, `host:port`),
//! the user (`0xE2`) when there is one, and the task (`0xE3`, 16 bytes: this worker's pid
//! and the task's number). What follows is the client's stream; forwarded HTTP goes over it
//! in origin form.

use g3proxy_proto::proxy_protocol::{self, TLV_TASK_ID, TLV_UPSTREAM, TLV_USERNAME};
use g3proxy_shared::config::escapers::{DEFAULT_DIVERT_PORT, DivertTcpConfig};

use super::next_hop::NextHop;
use super::{Connected, Dependencies, EscaperOps, HEADER_WRITE_TIMEOUT, Leg};
use crate::conn::write_all_within;
use crate::error::TaskError;

pub struct DivertTcpEscaper {
    next_hop: NextHop,
}

impl DivertTcpEscaper {
    pub fn build(config: &DivertTcpConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(DivertTcpEscaper {
            next_hop: NextHop::build(&config.next_hop, None, DEFAULT_DIVERT_PORT, deps)?,
        })
    }
}

/// The header for `leg`.
fn header(leg: &Leg<'_>) -> Vec<u8> {
    let upstream = leg.target.to_string();
    let task = crate::task::task_uuid(leg.task_id);
    let mut tlvs: Vec<(u8, &[u8])> = vec![(TLV_UPSTREAM, upstream.as_bytes())];
    if let Some(user) = leg.user_name() {
        tlvs.push((TLV_USERNAME, user.as_bytes()));
    }
    tlvs.push((TLV_TASK_ID, &task));
    let mut out = Vec::with_capacity(64 + upstream.len());
    proxy_protocol::encode_v2_with(leg.client, leg.server, &tlvs, &mut out);
    out
}

impl EscaperOps for DivertTcpEscaper {
    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        let mut connected = self.next_hop.connect(leg).await?;
        write_all_within(&connected.stream, &header(leg), HEADER_WRITE_TIMEOUT)
            .await
            .map_err(TaskError::UpstreamIo)?;
        connected.names_client = true;
        Ok(connected)
    }
}
