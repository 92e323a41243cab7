//! Config of `type: socks_proxy`: SOCKS5 (and SOCKS4a) CONNECT.

use serde::Deserialize;

use super::ServerKind;
use crate::types::HumanDuration;

fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SocksProxyConfig {
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auditor: Option<String>,
    /// Time allowed from accept to a complete SOCKS request.
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub negotiation_timeout: HumanDuration,
}

impl ServerKind for SocksProxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn auditor(&self) -> Option<&str> {
        self.auditor.as_deref()
    }
}
