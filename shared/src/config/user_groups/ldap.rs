//! `type: ldap`: users whose passwords a directory checks, by a simple bind as
//! `{username_attribute}={user},{base dn}` (`ldap_url: ldap://host[:port]/base-dn`, or
//! `ldaps://` for TLS from the first byte). Its users are its static and dynamic users (their
//! keys apply; a token is not needed), and with `unmanaged_user` any name the directory
//! accepts, with that user's keys. Successful binds are remembered for `cache_expire_time`.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::user::UserConfig;
use crate::config::tls::TlsClientConfig;
use crate::types::HumanDuration;

fn default_username_attribute() -> String {
    "uid".into()
}
fn default_max_message_size() -> usize {
    256
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}
fn default_response_timeout() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_queue_wait_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}
fn default_cache_user_count() -> usize {
    128
}
fn default_cache_expire_time() -> HumanDuration {
    HumanDuration::secs(300)
}

/// The keys an LDAP group has beyond every group's; decoded as a part of the same entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LdapKeys {
    #[serde(deserialize_with = "ldap_url")]
    pub ldap_url: LdapServer,
    #[serde(default = "default_username_attribute")]
    pub username_attribute: String,
    /// TLS toward an `ldaps://` server (the system's CA certificates without it).
    #[serde(default)]
    pub tls_client: Option<TlsClientConfig>,
    #[serde(default)]
    pub tls_name: Option<String>,
    /// The keys of users the directory knows and the config does not.
    #[serde(default)]
    pub unmanaged_user: Option<UserConfig>,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "default_response_timeout")]
    pub response_timeout: HumanDuration,
    /// g3's connection pool: accepted; this build opens a connection per bind (the cache
    /// keeps binds rare).
    #[serde(default, alias = "pool")]
    pub connection_pool: Option<Accepted>,
    /// Binds in flight at once (64 unless set), each login waiting `queue_wait_timeout` for
    /// its turn.
    #[serde(default)]
    pub queue_channel_size: Option<usize>,
    #[serde(default = "default_queue_wait_timeout")]
    pub queue_wait_timeout: HumanDuration,
    #[serde(default = "default_cache_user_count")]
    pub cache_user_count: usize,
    #[serde(default = "default_cache_expire_time")]
    pub cache_expire_time: HumanDuration,
}

/// A key whose value is read and has no effect (see where it is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted;

impl<'de> Deserialize<'de> for Accepted {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(deserializer)?;
        Ok(Accepted)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapServer {
    pub address: g3proxy_proto::HostPort,
    /// `ldaps://`.
    pub tls: bool,
    pub base_dn: String,
}

impl LdapKeys {
    pub fn cache_expire(&self) -> Duration {
        self.cache_expire_time.0
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.ldap_url.tls && (self.tls_client.is_some() || self.tls_name.is_some()) {
            return Err(
                "tls_client with an ldap:// url would need StartTLS, which this build does not speak: use ldaps://"
                    .into(),
            );
        }
        if self.username_attribute.is_empty()
            || !self
                .username_attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "invalid username_attribute {:?}",
                self.username_attribute
            ));
        }
        Ok(())
    }
}

fn ldap_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LdapServer, D::Error> {
    let url = String::deserialize(deserializer)?;
    let invalid = |why: &str| de::Error::custom(format!("invalid ldap_url {url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "ldap" => (false, 389),
        "ldaps" => (true, 636),
        _ => return Err(invalid("the scheme is ldap or ldaps")),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = g3proxy_proto::HostPort::parse_authority(authority, Some(default_port))
        .ok_or_else(|| invalid("no host"))?;
    // RFC 4516's attributes, scope and filter after `?` have no use in a bind.
    if path.contains('?') {
        return Err(invalid(
            "only the base dn may follow the host (no ?attributes)",
        ));
    }
    let base_dn = percent_decode(path).ok_or_else(|| invalid("the base dn is not valid"))?;
    if base_dn.trim().is_empty() {
        return Err(invalid(
            "no base dn: ldap://host/ou=people,dc=example,dc=com",
        ));
    }
    Ok(LdapServer {
        address,
        tls,
        base_dn,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
