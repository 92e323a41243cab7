//! Config of `type: sni_proxy`: TLS and plain HTTP on one port, each connection passed on
//! untouched to the host its ClientHello names (SNI) or its `Host` header does, on the port
//! it came in on. `allowed_hosts` (alias `allowed_sites`), when set, lists the hosts served,
//! each an exact host or a parent domain (`child_match`) or the default (an entry naming
//! no host is the default, as in g3), optionally
//! redirected elsewhere.

use g3proxy_proto::Host;
use serde::Deserialize;

use super::{FactsMatch, ServerKind, facts_match};
use crate::config::host_matched::{self, HostMatched};
use crate::types::{HumanDuration, HumanSize};

fn default_client_hello_max() -> HumanSize {
    HumanSize(1 << 16)
}
fn default_request_wait_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_request_recv_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SniProxyConfig {
    pub escaper: String,
    /// Absent: every host. A single entry or a list.
    #[serde(default, alias = "allowed_sites")]
    pub allowed_hosts: Option<Vec<AllowedHost>>,
    #[serde(
        default = "default_client_hello_max",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub tls_max_client_hello_size: HumanSize,
    /// How long a new connection may stay silent.
    #[serde(
        default = "default_request_wait_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub request_wait_timeout: HumanDuration,
    /// How long the rest of the ClientHello or request head may take once it began.
    #[serde(
        default = "default_request_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub request_recv_timeout: HumanDuration,
    #[serde(default)]
    pub auth_by_client_ip: bool,
    #[serde(default)]
    pub auth_by_server_name: bool,
    #[serde(default)]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auditor: Option<String>,
}

/// One entry of `allowed_hosts` (g3's host-matched object).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedHost {
    #[serde(default)]
    pub exact_match: Vec<String>,
    #[serde(default)]
    pub child_match: Vec<String>,
    #[serde(default)]
    pub set_default: bool,
    /// Where connections for this host go instead.
    #[serde(default)]
    pub redirect_host: Option<String>,
    #[serde(default)]
    pub redirect_port: Option<u16>,
}

impl SniProxyConfig {
    fn facts_auth_checked(&self) -> Result<Option<FactsMatch>, String> {
        facts_match(&[
            (
                self.auth_by_client_ip,
                FactsMatch::ClientIp,
                "auth_by_client_ip",
            ),
            (
                self.auth_by_server_name,
                FactsMatch::ServerName,
                "auth_by_server_name",
            ),
        ])
    }
}

impl ServerKind for SniProxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn auditor(&self) -> Option<&str> {
        self.auditor.as_deref()
    }
    fn facts_auth(&self) -> Option<FactsMatch> {
        self.facts_auth_checked().ok().flatten()
    }
    fn check(&self) -> Result<(), String> {
        let auth = self.facts_auth_checked()?;
        if auth.is_some() && self.user_group.is_none() {
            return Err("auth_by_* needs a user_group (of type facts)".into());
        }
        if let Some(hosts) = &self.allowed_hosts {
            host_matched::check(hosts, "allowed_hosts")?;
        }
        for host in self.allowed_hosts.iter().flatten() {
            if let Some(name) = &host.redirect_host
                && Host::parse_uri_host(name).is_none()
            {
                return Err(format!(
                    "redirect_host {name:?} is not a host name or address"
                ));
            }
            if host.redirect_port == Some(0) {
                return Err("redirect_port 0 is no port".into());
            }
        }
        Ok(())
    }
}

impl HostMatched for AllowedHost {
    fn exact_match(&self) -> &[String] {
        &self.exact_match
    }
    fn child_match(&self) -> &[String] {
        &self.child_match
    }
    fn set_default(&self) -> bool {
        self.set_default
    }
}
