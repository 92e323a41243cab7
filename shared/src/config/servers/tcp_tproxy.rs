//! Config of `type: tcp_tproxy`: a Linux TPROXY transparent proxy. The listening socket is
//! bound with IP_TRANSPARENT; TPROXY rules send it connections meant for other addresses, and
//! each goes to the address it was meant for.

use serde::Deserialize;

use super::ServerKind;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TcpTproxyConfig {
    pub escaper: String,
    #[serde(default)]
    pub auditor: Option<String>,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auth_by_client_ip: bool,
}

impl ServerKind for TcpTproxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn auditor(&self) -> Option<&str> {
        self.auditor.as_deref()
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn transparent(&self) -> bool {
        true
    }
    fn check(&self) -> Result<(), String> {
        if self.auth_by_client_ip {
            return Err(
                "auth_by_client_ip is not supported by this build yet (it needs a facts user group)"
                    .into(),
            );
        }
        Ok(())
    }
}
