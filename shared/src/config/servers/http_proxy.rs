//! Config of `type: http_proxy`: an HTTP/1.x forward proxy (absolute-URI requests, CONNECT,
//! and https forward of `GET https://…` sent in plain text), optionally behind TLS itself.

use serde::Deserialize;

use super::ServerKind;
use crate::config::tls::{OptionalTlsClient, TlsServerConfig};
use crate::types::{HumanDuration, HumanSize};

fn default_req_header_recv_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_rsp_header_recv_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_header_max_size() -> HumanSize {
    HumanSize(64 * 1024)
}
fn default_pipeline_read_idle_timeout() -> HumanDuration {
    HumanDuration::secs(300)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpProxyConfig {
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auditor: Option<String>,
    /// TLS on the listening socket: an HTTPS proxy.
    #[serde(default)]
    pub tls_server: Option<TlsServerConfig>,
    /// How https forward (`GET https://…`) speaks TLS to the origin; absent = the system's
    /// CA certificates.
    #[serde(default)]
    pub tls_client: Option<OptionalTlsClient>,
    #[serde(
        default = "default_req_header_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub req_header_recv_timeout: HumanDuration,
    #[serde(
        default = "default_rsp_header_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub rsp_header_recv_timeout: HumanDuration,
    #[serde(
        default = "default_header_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub req_header_max_size: HumanSize,
    #[serde(
        default = "default_header_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub rsp_header_max_size: HumanSize,
    /// How long a keep-alive client connection may wait for its next request.
    #[serde(
        default = "default_pipeline_read_idle_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub pipeline_read_idle_timeout: HumanDuration,
}

impl ServerKind for HttpProxyConfig {
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
