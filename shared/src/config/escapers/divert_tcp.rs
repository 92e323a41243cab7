//! Config of `type: divert_tcp`: every connection goes to a next hop that speaks no proxy
//! protocol of its own, prefixed with a PROXY protocol v2 header whose g3 TLVs name the
//! target, the user and the task. The keys are those of the `proxy_*` escapers' next hops,
//! without a login.

use serde::Deserialize;

use super::EscaperKind;
use super::next_hop::NextHopConfig;
use crate::config::de::Parts;
use crate::config::error::ConfigError;

/// The next hop's port when `proxy_addr` names none (g3's).
pub const DEFAULT_DIVERT_PORT: u16 = 3128;

impl EscaperKind for DivertTcpConfig {
    fn resolver(&self) -> Option<&str> {
        self.next_hop.resolver.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        if self.next_hop.proxy_username.is_some() || self.next_hop.proxy_password.is_some() {
            return Err(
                "divert_tcp sends no login: proxy_username and proxy_password do not apply".into(),
            );
        }
        self.next_hop.check()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DivertTcpConfig {
    pub next_hop: NextHopConfig,
}

impl DivertTcpConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct NoOwnKeys {}
        let next_hop = parts.decode()?;
        parts.decode::<NoOwnKeys>()?;
        Ok(DivertTcpConfig { next_hop })
    }
}
