//! g3's ACL rules over values other than networks (those are `network_acl.rs`): a user's
//! `dst_port_filter`, `proxy_request_filter`, `http_user_agent_filter` and the rules of
//! `dst_host_filter_set`. Every rule is written the same ways:
//!
//! - one value or a list: these values get the rule's "found" action (permit for most rules,
//!   forbid for user agents) and everything else the opposite;
//! - a map: `default: <action>`, and per action (`permit`, `forbid`, `permit_log`,
//!   `forbid_log` and their aliases) one value or a list.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::network_acl::{AclAction, IpNetwork};

/// What a rule's values are, and how one written value reads (`"80,443,8000-8100"` is
/// several ports).
pub trait AclItem: Sized {
    /// The action of values written as a plain list.
    const FOUND: AclAction = AclAction::Permit;
    const WHAT: &'static str;
    fn parse(text: &str) -> Result<Vec<Self>, String>;
    /// A value written as a map (only regexes have such a form).
    fn parse_map(_entries: Vec<(String, Vec<String>)>) -> Result<Vec<Self>, String> {
        Err(format!("expected {}, found a map", Self::WHAT))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AclRule<T> {
    pub default: AclAction,
    pub rules: Vec<(T, AclAction)>,
}

impl<T> AclRule<T> {
    /// The action of the first value `matches` accepts, else the default.
    pub fn check(&self, mut matches: impl FnMut(&T) -> bool) -> (AclAction, bool) {
        match self.rules.iter().find(|(item, _)| matches(item)) {
            Some((_, action)) => (*action, true),
            None => (self.default, false),
        }
    }
}

fn opposite(action: AclAction) -> AclAction {
    if action.is_permitted() {
        AclAction::Forbid
    } else {
        AclAction::Permit
    }
}

pub(super) fn action_from_key(key: &str) -> Option<AclAction> {
    Some(match key {
        "permit" | "allow" | "accept" => AclAction::Permit,
        "permit_log" | "allow_log" | "accept_log" => AclAction::PermitLog,
        "forbid" | "deny" | "reject" => AclAction::Forbid,
        "forbid_log" | "deny_log" | "reject_log" => AclAction::ForbidLog,
        _ => return None,
    })
}

/// One written value or a list of them, each read by [`AclItem::parse`].
pub struct Items<T>(pub Vec<T>);

impl<'de, T: AclItem> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<T>(PhantomData<T>);
        impl<'de, T: AclItem> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} or a list of them", T::WHAT)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Items<T>, E> {
                T::parse(text).map(Items).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Items<T>, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Items<T>, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut all = Vec::new();
                while let Some(Items(items)) = seq.next_element::<Items<T>>()? {
                    all.extend(items);
                }
                Ok(Items(all))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Items<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Texts(texts) = map.next_value()?;
                    entries.push((key, texts));
                }
                T::parse_map(entries).map(Items).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(ItemsVisitor(PhantomData))
    }
}

/// A string or a list of strings (the values inside a regex map; `to` of a resolve
/// redirection).
pub struct Texts(pub Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Texts, E> {
                Ok(Texts(vec![text.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut all = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    all.push(text);
                }
                Ok(Texts(all))
            }
        }
        deserializer.deserialize_any(TextsVisitor)
    }
}

impl<'de, T: AclItem> Deserialize<'de> for AclRule<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor<T>(PhantomData<T>);
        impl<T: AclItem> RuleVisitor<T> {
            fn found(items: Vec<T>) -> AclRule<T> {
                AclRule {
                    default: opposite(T::FOUND),
                    rules: items.into_iter().map(|i| (i, T::FOUND)).collect(),
                }
            }
        }
        impl<'de, T: AclItem> Visitor<'de> for RuleVisitor<T> {
            type Value = AclRule<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an ACL of {}: a list, or a map of default and actions",
                    T::WHAT
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<AclRule<T>, E> {
                T::parse(text).map(Self::found).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<AclRule<T>, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<AclRule<T>, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AclRule<T>, A::Error> {
                let Items(items) =
                    Items::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Self::found(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AclRule<T>, A::Error> {
                let mut rule = AclRule {
                    default: opposite(T::FOUND),
                    rules: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "default" {
                        let action: String = map.next_value()?;
                        rule.default =
                            action_from_key(&action.to_ascii_lowercase()).ok_or_else(|| {
                                de::Error::custom(format!("unknown acl action {action:?}"))
                            })?;
                        continue;
                    }
                    let action = action_from_key(&key)
                        .ok_or_else(|| de::Error::custom(format!("unknown acl action {key:?}")))?;
                    let Items(items) = map.next_value::<Items<T>>()?;
                    rule.rules.extend(items.into_iter().map(|i| (i, action)));
                }
                Ok(rule)
            }
        }
        deserializer.deserialize_any(RuleVisitor(PhantomData))
    }
}

/// A port range of `dst_port_filter`: `443`, `8000-8100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl AclItem for PortRange {
    const WHAT: &'static str = "ports";

    fn parse(text: &str) -> Result<Vec<PortRange>, String> {
        text.split(',')
            .map(|part| {
                let part = part.trim();
                let port = |t: &str| {
                    t.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("invalid port {t:?}"))
                };
                let (start, end) = match part.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => (port(part)?, port(part)?),
                };
                if start > end {
                    return Err(format!("invalid port range {part:?}"));
                }
                Ok(PortRange { start, end })
            })
            .collect()
    }
}

/// The kinds of request `proxy_request_filter` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRequestType {
    HttpForward,
    HttpsForward,
    FtpOverHttp,
    HttpConnect,
    SocksTcpConnect,
    SocksUdpAssociate,
}

impl AclItem for ProxyRequestType {
    const WHAT: &'static str = "request types";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        let squashed: String = text
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(vec![match squashed.as_str() {
            "httpforward" => ProxyRequestType::HttpForward,
            "httpsforward" => ProxyRequestType::HttpsForward,
            "ftpoverhttp" => ProxyRequestType::FtpOverHttp,
            "httpconnect" => ProxyRequestType::HttpConnect,
            "sockstcpconnect" => ProxyRequestType::SocksTcpConnect,
            "socksudpassociate" => ProxyRequestType::SocksUdpAssociate,
            _ => return Err(format!("unknown proxy request type {text:?}")),
        }])
    }
}

/// A product name in `User-Agent` (`curl` matches `curl/8.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentProduct(pub String);

impl AclItem for UserAgentProduct {
    const FOUND: AclAction = AclAction::Forbid;
    const WHAT: &'static str = "user agent product names";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        let name = text.trim();
        if name.is_empty() || !name.is_ascii() {
            return Err(format!("invalid user agent product name {text:?}"));
        }
        Ok(vec![UserAgentProduct(name.to_ascii_lowercase())])
    }
}

impl UserAgentProduct {
    /// Whether `header` names this product: the name at the start or after a space or `;`,
    /// followed by `/`, a space, `;` or the end.
    pub fn found_in(&self, header: &[u8]) -> bool {
        let name = self.0.as_bytes();
        if name.is_empty() || header.len() < name.len() {
            return false;
        }
        (0..=header.len() - name.len()).any(|at| {
            header[at..at + name.len()].eq_ignore_ascii_case(name)
                && (at == 0 || matches!(header[at - 1], b' ' | b';'))
                && header
                    .get(at + name.len())
                    .is_none_or(|b| matches!(b, b'/' | b' ' | b';'))
        })
    }
}

/// An exact host of `dst_host_filter_set`: an IP address or a domain (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExactHost {
    Ip(std::net::IpAddr),
    Domain(String),
}

impl AclItem for ExactHost {
    const WHAT: &'static str = "hosts";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        let text = text.trim();
        let unbracketed = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = unbracketed.parse() {
            return Ok(vec![ExactHost::Ip(ip)]);
        }
        Ok(vec![ExactHost::Domain(domain(text)?)])
    }
}

/// A domain as rules are written: lower case, without the trailing dot.
pub(crate) fn domain(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("invalid domain {text:?}"));
    }
    Ok(name)
}

/// A domain and its subdomains (`child_match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildDomain(pub String);

impl AclItem for ChildDomain {
    const WHAT: &'static str = "domains";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        Ok(vec![ChildDomain(domain(
            text.trim().trim_start_matches('.'),
        )?)])
    }
}

impl ChildDomain {
    pub fn contains(&self, host: &str) -> bool {
        let parent = self.0.as_str();
        host.len() >= parent.len()
            && host[host.len() - parent.len()..].eq_ignore_ascii_case(parent)
            && (host.len() == parent.len()
                || host.as_bytes()[host.len() - parent.len() - 1] == b'.')
    }
}

/// A regex on the whole domain, or with `{parent: D, regex: R}` on the part before `.D`;
/// unanchored, as g3 applies them.
#[derive(Debug, Clone)]
pub struct DomainRegex {
    pub parent: Option<String>,
    pub regex: regex_lite::Regex,
}

impl PartialEq for DomainRegex {
    fn eq(&self, other: &Self) -> bool {
        self.parent == other.parent && self.regex.as_str() == other.regex.as_str()
    }
}

fn compile(text: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(text).map_err(|e| format!("invalid regex {text:?}: {e}"))
}

impl AclItem for DomainRegex {
    const WHAT: &'static str = "regexes";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        Ok(vec![DomainRegex {
            parent: None,
            regex: compile(text)?,
        }])
    }

    fn parse_map(entries: Vec<(String, Vec<String>)>) -> Result<Vec<Self>, String> {
        let mut parent = None;
        let mut regexes = Vec::new();
        for (key, texts) in entries {
            match key.as_str() {
                "parent" => parent = texts.into_iter().next().map(|t| domain(&t)).transpose()?,
                "regex" => regexes.extend(texts),
                other => return Err(format!("invalid key {other} in a regex rule")),
            }
        }
        if regexes.is_empty() {
            return Err("a regex rule needs regex".into());
        }
        regexes
            .iter()
            .map(|text| {
                Ok(DomainRegex {
                    parent: parent.clone(),
                    regex: compile(text)?,
                })
            })
            .collect()
    }
}

impl DomainRegex {
    pub fn is_match(&self, host: &str) -> bool {
        match &self.parent {
            None => self.regex.is_match(host),
            Some(parent) => {
                let Some(prefix) = host
                    .len()
                    .checked_sub(parent.len() + 1)
                    .filter(|&cut| {
                        host.as_bytes()[cut] == b'.' && host[cut + 1..].eq_ignore_ascii_case(parent)
                    })
                    .map(|cut| &host[..cut])
                else {
                    return false;
                };
                self.regex.is_match(prefix)
            }
        }
    }
}

impl AclItem for IpNetwork {
    const WHAT: &'static str = "networks";

    fn parse(text: &str) -> Result<Vec<Self>, String> {
        Ok(vec![text.parse::<IpNetwork>()?.unmapped()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let ranges = PortRange::parse("80,443, 8000-8100").unwrap();
        assert_eq!(ranges.len(), 3);
        assert!(ranges[2].contains(8050));
        assert!(PortRange::parse("90-80").is_err());
        assert!(PortRange::parse("70000").is_err());
    }

    #[test]
    fn user_agents() {
        let curl = UserAgentProduct("curl".into());
        assert!(curl.found_in(b"curl/8.0"));
        assert!(curl.found_in(b"Mozilla/5.0 (x; CURL/7)"));
        assert!(curl.found_in(b"x;curl"));
        assert!(!curl.found_in(b"libcurl/8.0"));
        assert!(!curl.found_in(b"curly/1"));
    }

    #[test]
    fn domains() {
        let child = ChildDomain::parse(".Example.com").unwrap().remove(0);
        assert!(child.contains("example.com"));
        assert!(child.contains("a.b.example.com"));
        assert!(!child.contains("badexample.com"));
        let regex = DomainRegex::parse_map(vec![
            ("parent".into(), vec!["example.com".into()]),
            ("regex".into(), vec!["^api[0-9]+$".into()]),
        ])
        .unwrap()
        .remove(0);
        assert!(regex.is_match("api7.example.com"));
        assert!(!regex.is_match("api7.example.org"));
        assert!(!regex.is_match("www.example.com"));
        assert_eq!(
            ExactHost::parse("[::1]").unwrap(),
            vec![ExactHost::Ip("::1".parse().unwrap())]
        );
    }
}
