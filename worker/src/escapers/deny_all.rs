//! An escaper that refuses every operation as a policy: `type: dummy_deny`, and the stand-in
//! for an escaper that the config names but lacks (g3proxy's `DummyDeny`), whose refusals
//! name the missing escaper.

use std::net::SocketAddr;

use g3proxy_shared::config::escapers::DummyDenyConfig;

use super::{Connected, Dependencies, EscaperOps, Forward, Leg, LimitedSocket};
use crate::error::{Forbidden, TaskError};

pub struct DenyAll {
    /// The escaper the config lacks; `None` for a configured `dummy_deny`.
    missing: Option<String>,
}

impl DenyAll {
    pub fn new(name: &str) -> DenyAll {
        DenyAll {
            missing: Some(name.into()),
        }
    }

    pub fn build(_config: &DummyDenyConfig, _deps: &Dependencies) -> anyhow::Result<DenyAll> {
        Ok(DenyAll { missing: None })
    }

    fn denied(&self) -> TaskError {
        TaskError::Policy(match &self.missing {
            Some(name) => Forbidden::MissingEscaper(name.clone()),
            // Named by `Escaper::explain`, which knows the escaper.
            None => Forbidden::DeniedByEscaper(String::new()),
        })
    }
}

impl EscaperOps for DenyAll {
    async fn tcp_connect(&self, _leg: &Leg<'_>) -> Result<Connected, TaskError> {
        Err(self.denied())
    }

    async fn http_forward(&self, _leg: &Leg<'_>, _tls: bool) -> Option<Result<Forward, TaskError>> {
        Some(Err(self.denied()))
    }

    async fn udp_target(&self, _leg: &Leg<'_>) -> Result<SocketAddr, TaskError> {
        Err(self.denied())
    }

    fn udp_bind(&self, _target: SocketAddr) -> Result<LimitedSocket, TaskError> {
        Err(self.denied())
    }
}
