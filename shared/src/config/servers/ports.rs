//! Configs of the port entries: `plain_tcp_port`, `plain_tls_port` and `native_tls_port`.
//! Each is an extra listener in front of a named server: it reads an optional PROXY
//! protocol header (v1 or v2), terminates TLS for the TLS ports, and hands the connection on
//! with the client address the header reported.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::ServerKind;
use crate::config::tls::TlsServerConfig;
use crate::types::HumanDuration;

/// The PROXY protocol version a port expects; connections without a valid header are
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

impl<'de> Deserialize<'de> for ProxyProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "v1" => Ok(ProxyProtocol::V1),
            "2" | "v2" => Ok(ProxyProtocol::V2),
            _ => Err(de::Error::custom(format!(
                "invalid proxy protocol version {text:?} (1, 2, v1 or v2)"
            ))),
        }
    }
}

fn default_proxy_protocol_read_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlainTcpPortConfig {
    pub server: String,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(
        default = "default_proxy_protocol_read_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub proxy_protocol_read_timeout: HumanDuration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlainTlsPortConfig {
    pub server: String,
    pub tls_server: TlsServerConfig,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(
        default = "default_proxy_protocol_read_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub proxy_protocol_read_timeout: HumanDuration,
}

/// g3's OpenSSL (Tongsuo) port; this build runs it on rustls, so TLCP keys are refused.
pub type NativeTlsPortConfig = PlainTlsPortConfig;

impl ServerKind for PlainTcpPortConfig {
    fn next_servers(&self) -> Vec<&str> {
        vec![&self.server]
    }
}

impl ServerKind for PlainTlsPortConfig {
    fn next_servers(&self) -> Vec<&str> {
        vec![&self.server]
    }
}
