//! Config of `type: tcp_stream`: every connection goes to one of fixed upstreams (`upstream`,
//! alias `proxy_pass`: one address or a weighted list), over TLS with `tls_client`
//! ("TLS offloading"). [`StreamConfig`] is shared with `tls_stream`, which adds the required
//! `tls_server` on the client side.

use serde::Deserialize;

use super::{FactsMatch, ServerKind};
use crate::config::tls::{OptionalTlsClient, TlsServerConfig};
use crate::types::{PickPolicy, WeightedAddr};

/// The keys of both stream servers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamConfig {
    pub escaper: String,
    #[serde(alias = "proxy_pass")]
    pub upstream: Vec<WeightedAddr>,
    #[serde(default)]
    pub upstream_pick_policy: PickPolicy,
    /// TLS toward the upstream: a map, or `true` for the system's CA certificates.
    #[serde(default)]
    pub tls_client: Option<OptionalTlsClient>,
    /// The name the upstream's certificate is checked against; the upstream's host when unset.
    #[serde(default)]
    pub upstream_tls_name: Option<String>,
    /// `tls_stream` only: TLS on the client side.
    #[serde(default)]
    pub tls_server: Option<TlsServerConfig>,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auth_by_client_ip: bool,
}

impl StreamConfig {
    fn check(&self) -> Result<(), String> {
        if self.upstream.is_empty() {
            return Err("upstream (proxy_pass) is empty: name at least one address".into());
        }
        if let Some(entry) = self.upstream.iter().find(|e| e.addr.port.is_none()) {
            return Err(format!("upstream {} has no port", entry.addr.host));
        }
        if self.upstream_tls_name.is_some() && self.upstream_tls().is_none() {
            return Err(
                "upstream_tls_name without tls_client: the upstream is not spoken to over TLS"
                    .into(),
            );
        }
        if self.auth_by_client_ip && self.user_group.is_none() {
            return Err("auth_by_client_ip needs a user_group (of type facts)".into());
        }
        Ok(())
    }

    /// `auth_by_client_ip`, the only fact a stream server finds users by.
    pub fn facts_auth(&self) -> Option<FactsMatch> {
        self.auth_by_client_ip.then_some(FactsMatch::ClientIp)
    }

    /// The TLS client toward upstreams, when there is one.
    pub fn upstream_tls(&self) -> Option<&crate::config::tls::TlsClientConfig> {
        self.tls_client.as_ref().and_then(|t| t.0.as_ref())
    }
}

/// `type: tcp_stream`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct TcpStreamConfig(pub StreamConfig);

impl ServerKind for TcpStreamConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.0.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.0.user_group.as_deref()
    }
    fn facts_auth(&self) -> Option<FactsMatch> {
        self.0.facts_auth()
    }
    fn check(&self) -> Result<(), String> {
        if self.0.tls_server.is_some() {
            return Err(
                "tcp_stream has no tls_server: use tls_stream, or a plain_tls_port in front".into(),
            );
        }
        self.0.check()
    }
}

/// `type: tls_stream`: the same with TLS on the client side.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct TlsStreamConfig(pub StreamConfig);

impl TlsStreamConfig {
    /// Present: [`ServerKind::check`] refuses a `tls_stream` without it.
    pub fn tls_server(&self) -> Option<&TlsServerConfig> {
        self.0.tls_server.as_ref()
    }
}

impl ServerKind for TlsStreamConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.0.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.0.user_group.as_deref()
    }
    fn facts_auth(&self) -> Option<FactsMatch> {
        self.0.facts_auth()
    }
    fn check(&self) -> Result<(), String> {
        if self.0.tls_server.is_none() {
            return Err("tls_stream needs tls_server".into());
        }
        self.0.check()
    }
}
