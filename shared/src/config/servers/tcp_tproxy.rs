//! Config of `type: tcp_tproxy`: a Linux TPROXY transparent proxy. The listening socket is
//! bound with IP_TRANSPARENT; TPROXY rules send it connections meant for other addresses, and
//! each goes to the address it was meant for.

use serde::Deserialize;

use super::{FactsMatch, ServerKind, facts_match};

impl TcpTproxyConfig {
    fn facts_auth_checked(&self) -> Result<Option<FactsMatch>, String> {
        facts_match(&[
            (
                self.auth_by_client_ip,
                FactsMatch::ClientIp,
                "auth_by_client_ip",
            ),
            (
                self.auth_by_server_ip,
                FactsMatch::ServerIp,
                "auth_by_server_ip",
            ),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TcpTproxyConfig {
    pub escaper: String,
    #[serde(default)]
    pub auditor: Option<String>,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auth_by_client_ip: bool,
    #[serde(default)]
    pub auth_by_server_ip: bool,
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
    fn facts_auth(&self) -> Option<FactsMatch> {
        self.facts_auth_checked().ok().flatten()
    }
    fn check(&self) -> Result<(), String> {
        let auth = self.facts_auth_checked()?;
        if auth.is_some() && self.user_group.is_none() {
            return Err("auth_by_* needs a user_group (of type facts)".into());
        }
        Ok(())
    }
}
