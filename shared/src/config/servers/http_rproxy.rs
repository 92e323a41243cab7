//! Config of `type: http_rproxy` (aliases `http_gateway`, `http_reverse_proxy`): an HTTP/1.x
//! reverse proxy. `hosts` (alias `sites`, a host-matched object) maps the request's `Host`
//! to a site: its `upstream` (default port 80), optionally over TLS (`tls_client`,
//! `tls_name`), and with `enable_tls_server` its own certificate (`tls_server`, else
//! `global_tls_server`), chosen by the ClientHello's server name.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{HttpSessionConfig, ServerKind};
use crate::config::host_matched::{self, HostMatched};
use crate::config::tls::{OptionalTlsClient, TlsServerConfig};
use crate::types::{HumanDuration, UpstreamAddr};

fn default_client_hello_recv_timeout() -> HumanDuration {
    HumanDuration::secs(1)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpRproxyConfig {
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default = "default_auth_realm")]
    pub auth_realm: String,
    #[serde(alias = "sites")]
    pub hosts: Vec<RproxyHost>,
    /// TLS on the client side, with each site's certificate.
    #[serde(default)]
    pub enable_tls_server: bool,
    /// The certificate of sites without a `tls_server` of their own.
    #[serde(default)]
    pub global_tls_server: Option<TlsServerConfig>,
    #[serde(
        default = "default_client_hello_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub client_hello_recv_timeout: HumanDuration,
    #[serde(default)]
    pub append_forwarded_for: ForwardedFor,
    /// Names this proxy in `Via` (without it, the host the client asked for does).
    #[serde(default)]
    pub server_id: Option<String>,
    /// Nothing is answered before a request is known to be for a site (and, with users, to
    /// come from one): a bad request or an unknown host gets a close.
    #[serde(default)]
    pub no_early_error_reply: bool,
    /// Connections kept toward each site's upstream between requests.
    #[serde(default)]
    pub http_forward_upstream_keepalive: UpstreamKeepalive,
    /// Decoded as a part of its own (see `server_types!`).
    #[serde(skip)]
    pub session: HttpSessionConfig,
}

/// g3proxy's realm for its reverse proxy.
fn default_auth_realm() -> String {
    "g3proxy".into()
}

/// One site. Unknown keys are refused: a misspelt match key would otherwise leave an entry
/// without hosts, which is the default site.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RproxyHost {
    #[serde(default)]
    pub exact_match: Vec<String>,
    #[serde(default)]
    pub child_match: Vec<String>,
    #[serde(default)]
    pub set_default: bool,
    pub upstream: UpstreamAddr,
    /// TLS toward the upstream: a map (`{}` for the defaults) or `true`.
    #[serde(default)]
    pub tls_client: Option<OptionalTlsClient>,
    /// The name the upstream's certificate is checked against; the upstream's host if unset.
    #[serde(default)]
    pub tls_name: Option<String>,
    #[serde(default)]
    pub tls_server: Option<TlsServerConfig>,
}

impl RproxyHost {
    pub fn upstream_tls(&self) -> Option<&crate::config::tls::TlsClientConfig> {
        self.tls_client.as_ref().and_then(|t| t.0.as_ref())
    }
}

impl HostMatched for RproxyHost {
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

/// Which header tells the upstream who the client is (g3's forwarded header type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedFor {
    /// `X-Forwarded-For: <client ip>`.
    #[default]
    Classic,
    /// RFC 7239 `Forwarded: for="<client>";by="<us>"`.
    Standard,
    None,
}

impl<'de> Deserialize<'de> for ForwardedFor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "classic" | "enable" | "true" | "yes" | "on" => Ok(ForwardedFor::Classic),
            "standard" | "rfc7239" => Ok(ForwardedFor::Standard),
            "none" | "disable" | "false" | "no" | "off" => Ok(ForwardedFor::None),
            _ => Err(de::Error::custom(format!(
                "unknown forwarded header type {text}: expected classic, standard or none"
            ))),
        }
    }
}

/// g3's http keepalive value: a map (`enable`, `idle_expire`), a bool (`enable`), or a
/// duration (`idle_expire`, enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamKeepalive {
    pub enable: bool,
    pub idle_expire: Duration,
    /// The most idle connections kept per site and worker process (ours: g3 has no bound).
    pub max_idle_count: usize,
}

impl UpstreamKeepalive {
    /// Whether a connection idle for `idle_for` may carry another request.
    pub fn permits(&self, idle_for: Duration) -> bool {
        self.enable && idle_for < self.idle_expire
    }
}

impl Default for UpstreamKeepalive {
    fn default() -> Self {
        UpstreamKeepalive {
            enable: true,
            idle_expire: Duration::from_secs(60),
            max_idle_count: 64,
        }
    }
}

impl<'de> Deserialize<'de> for UpstreamKeepalive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Map {
            #[serde(default)]
            enable: Option<bool>,
            #[serde(default)]
            idle_expire: Option<HumanDuration>,
            #[serde(default)]
            max_idle_count: Option<usize>,
        }
        struct FormVisitor;
        impl<'de> de::Visitor<'de> for FormVisitor {
            type Value = UpstreamKeepalive;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map with enable and idle_expire, a bool, or a duration")
            }
            fn visit_bool<E: de::Error>(self, enable: bool) -> Result<Self::Value, E> {
                Ok(UpstreamKeepalive {
                    enable,
                    ..Default::default()
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                if let Ok(enable) = text.parse::<bool>() {
                    return self.visit_bool(enable);
                }
                let idle_expire =
                    HumanDuration::deserialize(de::value::StrDeserializer::<E>::new(text))?;
                Ok(UpstreamKeepalive {
                    idle_expire: idle_expire.0,
                    ..Default::default()
                })
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Self::Value, E> {
                Ok(UpstreamKeepalive {
                    idle_expire: Duration::from_secs(secs),
                    ..Default::default()
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = Map::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let defaults = UpstreamKeepalive::default();
                Ok(UpstreamKeepalive {
                    enable: raw.enable.unwrap_or(defaults.enable),
                    idle_expire: raw.idle_expire.map_or(defaults.idle_expire, |d| d.0),
                    max_idle_count: raw.max_idle_count.unwrap_or(defaults.max_idle_count),
                })
            }
        }
        deserializer.deserialize_any(FormVisitor)
    }
}

impl ServerKind for HttpRproxyConfig {
    fn escaper(&self) -> Option<&str> {
        Some(&self.escaper)
    }
    fn user_group(&self) -> Option<&str> {
        self.user_group.as_deref()
    }
    fn checks_passwords(&self) -> bool {
        true
    }
    fn check(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("hosts is empty: name at least one site".into());
        }
        host_matched::check(&self.hosts, "hosts")?;
        for (i, host) in self.hosts.iter().enumerate() {
            if host.tls_name.is_some() && host.upstream_tls().is_none() {
                return Err(format!(
                    "hosts[{i}].tls_name without tls_client: the upstream is not spoken to over TLS"
                ));
            }
        }
        if self.enable_tls_server
            && self.global_tls_server.is_none()
            && self.hosts.iter().all(|h| h.tls_server.is_none())
        {
            return Err(
                "enable_tls_server needs a certificate: set global_tls_server or a site's tls_server"
                    .into(),
            );
        }
        if let Some(id) = &self.server_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!(
                "server_id {id:?} must be printable ASCII without spaces (it goes into headers)"
            ));
        }
        Ok(())
    }
}
