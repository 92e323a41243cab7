//! Config of `type: proxy_http` and `type: proxy_https`: chain to a next-hop HTTP proxy, in
//! plain text or over TLS. TCP goes through `CONNECT`; HTTP forwarding sends the request in
//! absolute form to the next hop, and so does https forward when
//! `http_forward_capability.forward_https` says the next hop does the TLS.

use serde::Deserialize;

use super::EscaperKind;
use super::next_hop::{NextHopConfig, PeerTlsConfig};
use crate::config::de::Parts;
use crate::config::error::ConfigError;
use crate::types::HumanSize;

/// The next hop's port when `proxy_addr` names none (also for proxy_https, as in g3).
pub const DEFAULT_HTTP_PROXY_PORT: u16 = 3128;

impl EscaperKind for ProxyHttpConfig {
    fn resolver(&self) -> Option<&str> {
        self.next_hop.resolver.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        self.next_hop.check()
    }
}

/// `proxy_http`, and `proxy_https` (the same with `tls`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyHttpConfig {
    pub next_hop: NextHopConfig,
    pub http: HttpPeerKeys,
    /// `proxy_https`: TLS to the next hop.
    pub tls: Option<PeerTlsConfig>,
}

impl ProxyHttpConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        Ok(ProxyHttpConfig {
            next_hop: parts.decode()?,
            http: parts.decode()?,
            tls: None,
        })
    }

    pub(super) fn decode_tls(parts: &mut Parts) -> Result<Self, ConfigError> {
        Ok(ProxyHttpConfig {
            tls: Some(parts.decode()?),
            ..Self::decode(parts)?
        })
    }
}

/// The keys of an HTTP next hop.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpPeerKeys {
    #[serde(default)]
    pub http_forward_capability: HttpForwardCapability,
    #[serde(
        default = "default_connect_rsp_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub http_connect_rsp_header_max_size: HumanSize,
}

impl Default for HttpPeerKeys {
    fn default() -> Self {
        HttpPeerKeys {
            http_forward_capability: HttpForwardCapability::default(),
            http_connect_rsp_header_max_size: default_connect_rsp_max_size(),
        }
    }
}

fn default_connect_rsp_max_size() -> HumanSize {
    HumanSize(4 << 10)
}

/// What the next hop does itself when asked in absolute form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpForwardCapability {
    /// `GET https://…` goes to the next hop as it is, which speaks TLS to the origin; without
    /// it we tunnel through `CONNECT` and speak TLS ourselves.
    #[serde(default)]
    pub forward_https: bool,
    /// FTP over HTTP is not served by this build; the key is accepted for configs that set it.
    #[serde(default)]
    pub forward_ftp: bool,
    #[serde(default)]
    pub forward_ftp_get: bool,
    #[serde(default)]
    pub forward_ftp_put: bool,
    #[serde(default)]
    pub forward_ftp_del: bool,
}
