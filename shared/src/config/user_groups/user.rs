//! One user of a group, as `static_users`, `anonymous_user` and dynamic user files write it
//! (YAML and JSON take the same keys). Keys g3proxy has that this build does not enforce yet
//! are refused by name rather than accepted and ignored: a limit that silently does nothing
//! is worse than a config that says it cannot load.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::site::ExplicitSites;
use crate::config::escapers::{ResolveStrategy, TcpConnectConfig};
use crate::config::servers::UpstreamKeepalive;
pub use crate::types::Expire;
use crate::types::acl::{
    AclRule, ChildDomain, DomainRegex, ExactHost, PortRange, ProxyRequestType, Texts,
    UserAgentProduct, domain,
};
use crate::types::{
    AclAction, GlobalSpeedLimit, HumanDuration, IpNetwork, NetworkAcl, RateQuota, SpeedLimit, Token,
};
use crate::types::{TcpKeepalive, TcpMiscOpts};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(deserialize_with = "user_name")]
    pub name: String,
    #[serde(default)]
    pub token: Token,
    /// Seconds since the epoch after which the user is refused (RFC 3339 in the config).
    #[serde(default)]
    pub expire: Option<Expire>,
    /// The user is refused, after this delay (slows down whoever holds the password).
    #[serde(default)]
    pub block_and_delay: Option<HumanDuration>,
    #[serde(default, alias = "ingress_net_filter")]
    pub ingress_network_filter: Option<NetworkAcl>,
    #[serde(default)]
    pub proxy_request_filter: Option<AclRule<ProxyRequestType>>,
    #[serde(default)]
    pub dst_port_filter: Option<AclRule<PortRange>>,
    #[serde(default)]
    pub dst_host_filter_set: Option<DstHostFilterSet>,
    #[serde(default)]
    pub http_user_agent_filter: Option<AclRule<UserAgentProduct>>,
    #[serde(default, alias = "tcp_conn_speed_limit", alias = "tcp_conn_limit")]
    pub tcp_sock_speed_limit: Option<SpeedLimit>,
    #[serde(default, alias = "udp_relay_speed_limit", alias = "udp_relay_limit")]
    pub udp_sock_speed_limit: Option<SpeedLimit>,
    #[serde(default)]
    pub task_idle_max_count: Option<u32>,
    /// New client connections of the user, over the whole group of workers.
    #[serde(default, alias = "tcp_conn_rate_limit", alias = "tcp_conn_limit_quota")]
    pub connection_rate_limit: Option<RateQuota>,
    /// Requests (a forward, a tunnel, a UDP association) of the user, over the whole group.
    #[serde(default, alias = "request_limit_quota")]
    pub request_rate_limit: Option<RateQuota>,
    /// Requests of the user alive at once, over the whole group; 0 is no limit (g3's default).
    #[serde(default, alias = "request_max_alive")]
    pub request_alive_max: u32,

    /// Datagrams (bytes and packets) from the user's clients, over the whole group.
    #[serde(default)]
    pub udp_all_upload_speed_limit: Option<GlobalSpeedLimit>,
    /// Datagrams toward the user's clients, over the whole group.
    #[serde(default)]
    pub udp_all_download_speed_limit: Option<GlobalSpeedLimit>,
    /// SOCKS5 UDP in "udp associate" mode for this user even where the server keeps to
    /// "udp connect" (g3: either one asks for it).
    #[serde(default)]
    pub socks_use_udp_associate: bool,
    /// How long an upstream may take to answer this user's forwarded requests, in place of
    /// the server's `rsp_header_recv_timeout`.
    #[serde(default)]
    pub http_rsp_header_recv_timeout: Option<HumanDuration>,
    /// In a facts group: the connections that are this user's.
    #[serde(default)]
    pub match_by_facts: Vec<Fact>,
    /// Names the user's targets resolve as (a DNS hijack of the user's own).
    #[serde(default)]
    pub resolve_redirection: Option<ResolveRedirection>,
    /// Task log events of the user's tasks, over the whole group; the rest are dropped
    /// (and counted as `user.forbidden.log_skipped`).
    #[serde(default, alias = "log_limit_quota")]
    pub log_rate_limit: Option<RateQuota>,
    /// How much of a forwarded request's URI its task log keeps (1024 characters without).
    #[serde(default, alias = "uri_log_max_chars")]
    pub log_uri_max_chars: Option<usize>,
    /// How the direct escapers resolve the user's targets (a site's wins): its pick, and its
    /// query unless the escaper keeps to one family.
    #[serde(default)]
    pub resolve_strategy: Option<ResolveStrategy>,
    /// Bounds on the direct escapers' `tcp_connect` for the user's tasks: the fewer tries and
    /// the shorter timeout of the two.
    #[serde(default)]
    pub tcp_connect: Option<TcpConnectConfig>,
    /// Over the direct escapers' `tcp_keepalive` toward the user's targets: on if either is,
    /// the shorter times.
    #[serde(default)]
    pub tcp_remote_keepalive: Option<TcpKeepalive>,
    /// Over the direct escapers' `tcp_misc_opts` toward the user's targets
    /// (`TcpMiscOpts::with_user`).
    #[serde(default)]
    pub tcp_remote_misc_opts: Option<TcpMiscOpts>,
    /// Whether, and for how long idle, a kept upstream connection may carry the user's next
    /// forwarded request: bounds the server's (off turns reuse off).
    #[serde(default)]
    pub http_upstream_keepalive: Option<UpstreamKeepalive>,
    /// g3's path selection by id: escaper name → the path it takes for the user (a
    /// `direct_float`'s published bind with that `id`, a `route_select`'s next escaper of
    /// that name).
    #[serde(default)]
    pub egress_path_id_map: Option<std::collections::BTreeMap<String, String>>,
    /// g3's path selection by value: escaper name → what it takes for the user, given
    /// whole (a `direct_float`'s bind, a `proxy_float`'s peer, in their publish forms).
    #[serde(default)]
    pub egress_path_value_map: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Targets with metrics and settings of their own (`site.rs`).
    #[serde(default)]
    pub explicit_sites: ExplicitSites,
    /// Bytes from the user's clients, over all its connections in the whole group.
    #[serde(default)]
    pub tcp_all_upload_speed_limit: Option<GlobalSpeedLimit>,
    /// Bytes toward the user's clients, over all its connections in the whole group.
    #[serde(default)]
    pub tcp_all_download_speed_limit: Option<GlobalSpeedLimit>,

    // g3proxy keys this build refuses until they are enforced (see the module comment).
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub audit: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub udp_remote_misc_opts: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub tcp_client_misc_opts: (),
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub udp_client_misc_opts: (),
}

fn user_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = String::deserialize(deserializer)?;
    if name.is_empty() || name.len() > 255 {
        return Err(de::Error::custom("a user name has 1 to 255 bytes"));
    }
    // A `:` could never be sent in HTTP Basic credentials (it ends the name).
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err(de::Error::custom(format!(
            "invalid user name {name:?}: no ':' or control characters"
        )));
    }
    Ok(name)
}

/// `dst_host_filter_set`: rules on the target host, tried exact → child → regex for a
/// domain, exact → subnet for an IP address; the first rule that matches decides, else the
/// strictest default among the rules given (g3's semantics: a plain list anywhere makes
/// every unmatched target forbidden, IP addresses included).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DstHostFilterSet {
    #[serde(default, alias = "exact")]
    pub exact_match: Option<AclRule<ExactHost>>,
    #[serde(default, alias = "child")]
    pub child_match: Option<AclRule<ChildDomain>>,
    #[serde(default, alias = "regex")]
    pub regex_match: Option<AclRule<DomainRegex>>,
    #[serde(default, alias = "subnet")]
    pub subnet_match: Option<AclRule<IpNetwork>>,
}

/// g3 forbids these targets in every `subnet_match` unless the rule names them.
const SUBNET_FORBIDDEN: [&str; 7] = [
    "0.0.0.0/32",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::/128",
    "::1/128",
    "fe80::/10",
    "100::/64",
];

/// The stricter of two actions (forbid_log < forbid < permit_log < permit).
pub fn stricter(a: AclAction, b: AclAction) -> AclAction {
    let rank = |action| match action {
        AclAction::ForbidLog => 0,
        AclAction::Forbid => 1,
        AclAction::PermitLog => 2,
        AclAction::Permit => 3,
    };
    if rank(a) <= rank(b) { a } else { b }
}

impl DstHostFilterSet {
    fn default_action(&self) -> AclAction {
        [
            self.exact_match.as_ref().map(|r| r.default),
            self.child_match.as_ref().map(|r| r.default),
            self.regex_match.as_ref().map(|r| r.default),
            self.subnet_match.as_ref().map(|r| r.default),
        ]
        .into_iter()
        .flatten()
        .fold(AclAction::Permit, stricter)
    }

    pub fn check_ip(&self, ip: std::net::IpAddr) -> AclAction {
        let ip = ip.to_canonical();
        if let Some(exact) = &self.exact_match
            && let (action, true) = exact.check(|h| *h == ExactHost::Ip(ip))
        {
            return action;
        }
        if let Some(subnet) = &self.subnet_match {
            let configured = subnet
                .rules
                .iter()
                .filter(|(net, _)| net.contains(ip))
                .max_by_key(|(net, _)| net.prefix);
            if let Some((_, action)) = configured {
                return *action;
            }
            let builtin = SUBNET_FORBIDDEN
                .iter()
                .filter_map(|n| n.parse::<IpNetwork>().ok())
                .any(|net| net.contains(ip));
            if builtin {
                return AclAction::Forbid;
            }
        }
        self.default_action()
    }

    /// `domain` in lower case.
    pub fn check_domain(&self, domain: &str) -> AclAction {
        if let Some(exact) = &self.exact_match
            && let (action, true) =
                exact.check(|h| matches!(h, ExactHost::Domain(d) if d == domain))
        {
            return action;
        }
        if let Some(child) = &self.child_match {
            // The most specific parent decides when several are listed.
            let nearest = child
                .rules
                .iter()
                .filter(|(parent, _)| parent.contains(domain))
                .max_by_key(|(parent, _)| parent.0.len());
            if let Some((_, action)) = nearest {
                return *action;
            }
        }
        if let Some(regex) = &self.regex_match {
            // Strictest first, as g3 tries its regex sets.
            let found = regex
                .rules
                .iter()
                .filter(|(r, _)| r.is_match(domain))
                .map(|(_, action)| *action)
                .reduce(stricter);
            if let Some(action) = found {
                return action;
            }
        }
        self.default_action()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_times() {
        assert_eq!(Expire::parse("1970-01-01T00:00:00Z").unwrap().unix_secs, 0);
        assert_eq!(
            Expire::parse("2019-05-23T17:38:00Z").unwrap().unix_secs,
            1_558_633_080
        );
        assert_eq!(
            Expire::parse("2019-05-23T19:38:00.25+02:00")
                .unwrap()
                .unix_secs,
            1_558_633_080
        );
        assert!(Expire::parse("2019-05-23T17:38:00").is_none());
        assert!(Expire::parse("2019-13-23T17:38:00Z").is_none());
        assert!(Expire::parse("yesterday").is_none());
    }

    #[test]
    fn host_sets() {
        let permit = |items: Vec<ExactHost>| AclRule {
            default: AclAction::Forbid,
            rules: items.into_iter().map(|i| (i, AclAction::Permit)).collect(),
        };
        let only_exact = DstHostFilterSet {
            exact_match: Some(permit(vec![ExactHost::Domain("example.com".into())])),
            child_match: None,
            regex_match: None,
            subnet_match: None,
        };
        assert_eq!(only_exact.check_domain("example.com"), AclAction::Permit);
        assert_eq!(
            only_exact.check_domain("www.example.com"),
            AclAction::Forbid
        );
        // g3's rule: a list forbids everything else, addresses too.
        assert_eq!(
            only_exact.check_ip("192.0.2.1".parse().unwrap()),
            AclAction::Forbid
        );

        let children = DstHostFilterSet {
            child_match: Some(AclRule {
                default: AclAction::Permit,
                rules: vec![
                    (ChildDomain("example.com".into()), AclAction::Forbid),
                    (ChildDomain("ok.example.com".into()), AclAction::Permit),
                ],
            }),
            exact_match: None,
            regex_match: None,
            subnet_match: Some(AclRule {
                default: AclAction::Permit,
                rules: Vec::new(),
            }),
        };
        assert_eq!(children.check_domain("a.example.com"), AclAction::Forbid);
        assert_eq!(children.check_domain("x.ok.example.com"), AclAction::Permit);
        assert_eq!(children.check_domain("example.org"), AclAction::Permit);
        assert_eq!(
            children.check_ip("127.0.0.1".parse().unwrap()),
            AclAction::Forbid
        );
        assert_eq!(
            children.check_ip("192.0.2.1".parse().unwrap()),
            AclAction::Permit
        );
    }
}

/// `resolve_redirection`: names this user's targets resolve as, before the escaper's
/// resolver sees them. A list of `{exact: NAME, to: ADDRESS | [ADDRESSES] | NAME}` and
/// `{parent: DOMAIN, to: DOMAIN}` (the domain and every name under it, the suffix replaced;
/// the guide writes it `child`), or a map `NAME: TO` of exact rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolveRedirection(pub Vec<Redirect>);

#[derive(Debug, Clone, PartialEq)]
pub enum Redirect {
    Exact { name: String, to: RedirectTo },
    Parent { domain: String, to: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RedirectTo {
    Addresses(Vec<std::net::IpAddr>),
    Name(String),
}

impl ResolveRedirection {
    /// Where `name` (lower case) resolves for this user: `None` when no rule names it.
    pub fn redirect(&self, name: &str) -> Option<RedirectTo> {
        for rule in &self.0 {
            match rule {
                Redirect::Exact { name: exact, to } if exact == name => return Some(to.clone()),
                Redirect::Parent { domain, to } => {
                    if name == domain {
                        return Some(RedirectTo::Name(to.clone()));
                    }
                    if let Some(prefix) = name.strip_suffix(domain.as_str())
                        && let Some(prefix) = prefix.strip_suffix('.')
                    {
                        return Some(RedirectTo::Name(format!("{prefix}.{to}")));
                    }
                }
                Redirect::Exact { .. } => {}
            }
        }
        None
    }
}

fn redirect_to(texts: Vec<String>) -> Result<RedirectTo, String> {
    let addresses: Result<Vec<std::net::IpAddr>, _> =
        texts.iter().map(|t| t.trim().parse()).collect();
    match (addresses, texts.as_slice()) {
        (Ok(addresses), _) if !addresses.is_empty() => Ok(RedirectTo::Addresses(addresses)),
        (_, [name]) => Ok(RedirectTo::Name(
            name.trim().trim_end_matches('.').to_ascii_lowercase(),
        )),
        _ => Err("to must be a name, an address or a list of addresses".into()),
    }
}

impl<'de> Deserialize<'de> for ResolveRedirection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> de::Visitor<'de> for RulesVisitor {
            type Value = ResolveRedirection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of {exact|parent: NAME, to: ...} rules, or a map NAME: TO")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ResolveRedirection, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element::<RuleMap>()? {
                    rules.push(rule.0);
                }
                Ok(ResolveRedirection(rules))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ResolveRedirection, A::Error> {
                let mut rules = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Texts(to) = map.next_value()?;
                    rules.push(Redirect::Exact {
                        name: domain_name(&name).map_err(de::Error::custom)?,
                        to: redirect_to(to).map_err(de::Error::custom)?,
                    });
                }
                Ok(ResolveRedirection(rules))
            }
        }
        deserializer.deserialize_any(RulesVisitor)
    }
}

/// A name a redirection is for: a domain, not an address.
fn domain_name(text: &str) -> Result<String, String> {
    let name = domain(text)?;
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("{text:?} is no domain name"));
    }
    Ok(name)
}

/// One rule of the list form.
struct RuleMap(Redirect);

impl<'de> Deserialize<'de> for RuleMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> de::Visitor<'de> for RuleVisitor {
            type Value = RuleMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{exact: NAME, to: ...} or {parent: DOMAIN, to: DOMAIN}")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RuleMap, A::Error> {
                let (mut exact, mut parent, mut to) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "exact" => exact = Some(map.next_value::<String>()?),
                        // The guide's spelling of g3's `parent`.
                        "parent" | "child" => parent = Some(map.next_value::<String>()?),
                        "to" => to = Some(map.next_value::<Texts>()?.0),
                        other => {
                            return Err(de::Error::custom(format!(
                                "invalid key {other} in a resolve redirection"
                            )));
                        }
                    }
                }
                let to = to.ok_or_else(|| de::Error::custom("a redirection needs to"))?;
                let rule = match (exact, parent) {
                    (Some(name), None) => Redirect::Exact {
                        name: domain_name(&name).map_err(de::Error::custom)?,
                        to: redirect_to(to).map_err(de::Error::custom)?,
                    },
                    (None, Some(domain)) => match redirect_to(to).map_err(de::Error::custom)? {
                        RedirectTo::Name(to) => Redirect::Parent {
                            domain: domain_name(&domain).map_err(de::Error::custom)?,
                            to,
                        },
                        RedirectTo::Addresses(_) => {
                            return Err(de::Error::custom(
                                "a parent redirection goes to another domain, not to addresses",
                            ));
                        }
                    },
                    _ => {
                        return Err(de::Error::custom(
                            "a redirection has exact or parent (one of them)",
                        ));
                    }
                };
                Ok(RuleMap(rule))
            }
        }
        deserializer.deserialize_map(RuleVisitor)
    }
}

#[cfg(test)]
mod redirection_tests {
    use super::*;

    #[test]
    fn rules() {
        let rules = ResolveRedirection(vec![
            Redirect::Exact {
                name: "t1.example.net".into(),
                to: RedirectTo::Addresses(vec!["192.168.10.1".parse().unwrap()]),
            },
            Redirect::Parent {
                domain: "example.com".into(),
                to: "example.net".into(),
            },
        ]);
        assert_eq!(
            rules.redirect("t1.example.net"),
            Some(RedirectTo::Addresses(vec!["192.168.10.1".parse().unwrap()]))
        );
        assert_eq!(
            rules.redirect("a.b.example.com"),
            Some(RedirectTo::Name("a.b.example.net".into()))
        );
        assert_eq!(
            rules.redirect("example.com"),
            Some(RedirectTo::Name("example.net".into()))
        );
        assert_eq!(rules.redirect("badexample.com"), None);
        assert!(redirect_to(vec!["a.test".into(), "b.test".into()]).is_err());
    }
}

/// One fact of `match_by_facts`: `ip: ADDRESS`, `net: NETWORK`, `domain: NAME` (alias
/// `exact_domain`) or `child_domain: DOMAIN` (the domain and every name under it), written as
/// a one-key map or as the string `type:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Ip(std::net::IpAddr),
    Network(IpNetwork),
    ExactDomain(String),
    ChildDomain(String),
}

impl Fact {
    fn parse(kind: &str, value: &str) -> Result<Fact, String> {
        let value = value.trim();
        Ok(
            match kind.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "ip" => Fact::Ip(
                    value
                        .parse()
                        .map_err(|_| format!("invalid ip address {value:?}"))?,
                ),
                "net" => {
                    let network: IpNetwork = value.parse()?;
                    let network = network.unmapped();
                    let full = if network.address.is_ipv4() { 32 } else { 128 };
                    match network.prefix == full {
                        true => Fact::Ip(network.address),
                        false => Fact::Network(network),
                    }
                }
                "domain" | "exact_domain" => Fact::ExactDomain(domain(value)?),
                "child_domain" => Fact::ChildDomain(domain(value.trim_start_matches('.'))?),
                other => {
                    return Err(format!(
                        "unknown fact type {other:?}: ip, net, domain or child_domain"
                    ));
                }
            },
        )
    }
}

impl<'de> Deserialize<'de> for Fact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FactVisitor;
        impl<'de> de::Visitor<'de> for FactVisitor {
            type Value = Fact;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fact: TYPE:VALUE or {TYPE: VALUE}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Fact, E> {
                let (kind, value) = text
                    .split_once(':')
                    .ok_or_else(|| E::custom(format!("invalid fact {text:?}: TYPE:VALUE")))?;
                Fact::parse(kind, value).map_err(E::custom)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Fact, A::Error> {
                let kind: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("a fact needs a type"))?;
                let value: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a fact is one TYPE: VALUE pair"));
                }
                Fact::parse(&kind, &value).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(FactVisitor)
    }
}

#[cfg(test)]
mod fact_tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            Fact::parse("ip", "192.0.2.1").unwrap(),
            Fact::Ip("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            Fact::parse("net", "192.0.2.1/32").unwrap(),
            Fact::Ip("192.0.2.1".parse().unwrap())
        );
        assert!(matches!(
            Fact::parse("net", "10.0.0.0/8").unwrap(),
            Fact::Network(_)
        ));
        assert_eq!(
            Fact::parse("exact-domain", "A.Test.").unwrap(),
            Fact::ExactDomain("a.test".into())
        );
        assert_eq!(
            Fact::parse("child_domain", ".b.test").unwrap(),
            Fact::ChildDomain("b.test".into())
        );
        assert!(Fact::parse("port", "80").is_err());
    }
}
