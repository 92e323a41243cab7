//! Config of `type: intelli_proxy` (g3's `ppdp_tcp_port`): one port for HTTP and SOCKS
//! clients alike; the first bytes say which server gets the connection.

use serde::Deserialize;

use super::ServerKind;
use super::ports::ProxyProtocol;
use crate::types::HumanDuration;

fn default_protocol_detection_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}
fn default_proxy_protocol_read_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IntelliProxyConfig {
    pub http_server: String,
    pub socks_server: String,
    #[serde(
        default = "default_protocol_detection_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub protocol_detection_timeout: HumanDuration,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(
        default = "default_proxy_protocol_read_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub proxy_protocol_read_timeout: HumanDuration,
    /// g3's detection pool tuning; detection here runs in each connection's own task.
    #[serde(default)]
    pub protocol_detection_channel_size: Option<usize>,
    #[serde(default)]
    pub protocol_detection_max_jobs: Option<usize>,
}

impl ServerKind for IntelliProxyConfig {
    fn next_servers(&self) -> Vec<&str> {
        vec![&self.http_server, &self.socks_server]
    }
}
