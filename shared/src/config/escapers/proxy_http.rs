//! Config of `type: proxy_http`: chain to a next-hop HTTP proxy. TCP goes through `CONNECT`;
//! HTTP forwarding sends the request in absolute form to the next hop, and so does https
//! forward when `http_forward_capability.forward_https` says the next hop does the TLS.

use g3proxy_proto::Host;
use serde::Deserialize;

use super::{EscaperKind, TcpConnectConfig};
use crate::types::{HumanDuration, HumanSize, PickPolicy, Secret, WeightedAddr};

/// The next hop's port when `proxy_addr` names none.
pub const DEFAULT_HTTP_PROXY_PORT: u16 = 3128;

impl EscaperKind for ProxyHttpConfig {
    fn resolver(&self) -> Option<&str> {
        self.resolver.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        if self.proxy_addr.is_empty() {
            return Err("proxy_addr is empty: name at least one next-hop proxy".into());
        }
        if self.proxy_addr_pick_policy.is_hashed() {
            // g3 hashes on `<client-ip>[-<user>]-<host>`; the escaper operations do not carry
            // the client yet, and a key without it would not keep a client on its next hop.
            return Err(
                "proxy_addr_pick_policy: the hashing policies (ketama, rendezvous, jump_hash) are not supported for next hops by this build yet: use random, serial or rr"
                    .into(),
            );
        }
        let by_name = self
            .proxy_addr
            .iter()
            .any(|entry| matches!(entry.addr.host, Host::Domain(_)));
        if by_name && self.resolver.is_none() {
            return Err("proxy_addr names a host: set resolver to look it up".into());
        }
        // RFC 7617: the user-id ends at the first colon, and neither part has controls.
        let controls = |text: &str| text.chars().any(char::is_control);
        match (&self.proxy_username, &self.proxy_password) {
            (None, Some(_)) => Err("proxy_password without proxy_username".into()),
            (Some(user), _) if user.contains(':') => {
                Err("proxy_username may not contain ':' (Basic auth splits there)".into())
            }
            (Some(user), password)
                if controls(user) || password.as_ref().is_some_and(|p| controls(&p.0)) =>
            {
                Err("proxy_username and proxy_password may not contain control characters".into())
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProxyHttpConfig {
    /// One address or a list, entries optionally weighted.
    pub proxy_addr: Vec<WeightedAddr>,
    #[serde(default)]
    pub proxy_addr_pick_policy: PickPolicy,
    /// Resolves `proxy_addr` entries given by name.
    #[serde(default)]
    pub resolver: Option<String>,
    #[serde(default)]
    pub proxy_username: Option<String>,
    #[serde(default)]
    pub proxy_password: Option<Secret>,
    #[serde(default)]
    pub http_forward_capability: HttpForwardCapability,
    #[serde(
        default = "default_connect_rsp_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub http_connect_rsp_header_max_size: HumanSize,
    /// How long the next hop has to answer a `CONNECT`.
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub peer_negotiation_timeout: HumanDuration,
    #[serde(default)]
    pub tcp_connect: TcpConnectConfig,
}

fn default_connect_rsp_max_size() -> HumanSize {
    HumanSize(4 << 10)
}

fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(10)
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
