//! The stand-in for an escaper that the config names but lacks (g3proxy's `DummyDeny`): every
//! operation is refused as a policy, naming the missing escaper.

use std::net::SocketAddr;

use g3proxy_proto::HostPort;
use tokio::net::UdpSocket;

use super::{Connected, EscaperOps, Forward};
use crate::error::{Forbidden, TaskError};

pub struct DenyAll {
    name: String,
}

impl DenyAll {
    pub fn new(name: &str) -> DenyAll {
        DenyAll { name: name.into() }
    }

    fn denied(&self) -> TaskError {
        TaskError::Policy(Forbidden::MissingEscaper(self.name.clone()))
    }
}

impl EscaperOps for DenyAll {
    async fn tcp_connect(&self, _target: &HostPort) -> Result<Connected, TaskError> {
        Err(self.denied())
    }

    async fn http_forward(
        &self,
        _target: &HostPort,
        _tls: bool,
    ) -> Option<Result<Forward, TaskError>> {
        Some(Err(self.denied()))
    }

    async fn udp_target(&self, _target: &HostPort) -> Result<SocketAddr, TaskError> {
        Err(self.denied())
    }

    fn udp_bind(&self, _target: SocketAddr) -> Result<UdpSocket, TaskError> {
        Err(self.denied())
    }
}
