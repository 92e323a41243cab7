//! Config of `type: http_proxy`: an HTTP/1.x forward proxy (absolute-URI requests, CONNECT,
//! and https forward of `GET https://…` sent in plain text), optionally behind TLS itself.

use serde::Deserialize;

use super::{HttpSessionConfig, ServerKind};
use crate::config::tls::{OptionalTlsClient, TlsServerConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpProxyConfig {
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    /// The realm of the `Proxy-Authenticate` challenge when a user group is set.
    #[serde(default = "default_auth_realm")]
    pub auth_realm: String,
    #[serde(default)]
    pub auditor: Option<String>,
    /// TLS on the listening socket: an HTTPS proxy.
    #[serde(default)]
    pub tls_server: Option<TlsServerConfig>,
    /// How https forward (`GET https://…`) speaks TLS to the origin; absent = the system's
    /// CA certificates.
    #[serde(default)]
    pub tls_client: Option<OptionalTlsClient>,
    /// A request header whose number picks the path of the server's escaper (a
    /// `route_mapping`'s next escaper); taken off the request. Lower case.
    #[serde(
        default,
        alias = "path_selection_header",
        deserialize_with = "header_name"
    )]
    pub egress_path_selection_header: Option<String>,
    /// Decoded as a part of its own (see `server_types!`).
    #[serde(skip)]
    pub session: HttpSessionConfig,
}

fn header_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(serde::de::Error::custom(format!(
            "invalid header name {name:?}"
        )));
    }
    Ok(Some(name.to_ascii_lowercase()))
}

fn default_auth_realm() -> String {
    "proxy".into()
}

impl ServerKind for HttpProxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn checks_passwords(&self) -> bool {
        true
    }
    fn auditor(&self) -> Option<&str> {
        self.auditor.as_deref()
    }
}
