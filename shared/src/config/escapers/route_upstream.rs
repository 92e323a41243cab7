//! Config of `type: route_upstream`: the next escaper chosen by the target host. An address
//! is looked up in `exact_match`, then `subnet_match` (longest prefix); a domain in
//! `exact_match`, then `child_match` (the domain or one under it, longest first), then
//! `suffix_match` (alias `radix_match`, a plain string suffix); anything else goes to
//! `default_next`. Each rule set is a list of `{next, hosts|subnets|domains|suffixes}` or a
//! map of next escaper to values (g3proxy reads both for its builders); a value listed for
//! two escapers is refused.

use g3proxy_proto::Host;
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::EscaperKind;
use super::rules::{convert, domain, raw_rules, subnet_rules};
use crate::types::IpNetwork;

impl EscaperKind for RouteUpstreamConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names = vec![self.default_next.as_str()];
        names.extend(self.exact_match.iter().map(|(next, _)| next.as_str()));
        names.extend(self.subnet_match.iter().map(|(next, _)| next.as_str()));
        names.extend(self.child_match.iter().map(|(next, _)| next.as_str()));
        names.extend(self.suffix_match.iter().map(|(next, _)| next.as_str()));
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteUpstreamConfig {
    pub default_next: String,
    #[serde(default, alias = "exact_rules", deserialize_with = "exact_rules")]
    pub exact_match: Vec<(String, Vec<Host>)>,
    #[serde(default, alias = "subnet_rules", deserialize_with = "subnet_rules")]
    pub subnet_match: Vec<(String, Vec<IpNetwork>)>,
    #[serde(default, alias = "child_rules", deserialize_with = "domain_rules")]
    pub child_match: Vec<(String, Vec<String>)>,
    #[serde(
        default,
        alias = "suffix_rules",
        alias = "radix_match",
        alias = "radix_rules",
        deserialize_with = "suffix_rules"
    )]
    pub suffix_match: Vec<(String, Vec<String>)>,
    /// Refused at load until regular expressions come with the filters that need them too.
    #[serde(default, alias = "regex_rules", deserialize_with = "no_regex_rules")]
    pub regex_match: (),
}

fn exact_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<Host>)>, D::Error> {
    let raw = raw_rules(d, &["hosts", "host"])?;
    convert(
        raw,
        |v| match v.parse() {
            Ok(ip) => Some(Host::Ip(ip)),
            Err(_) => domain(v).map(Host::Domain),
        },
        "host",
    )
}

fn domain_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<String>)>, D::Error> {
    let raw = raw_rules(d, &["domains", "domain"])?;
    convert(raw, domain, "domain")
}

fn suffix_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<String>)>, D::Error> {
    let raw = raw_rules(d, &["suffixes", "suffix"])?;
    convert(
        raw,
        |v| {
            let v = v.strip_suffix('.').unwrap_or(v);
            (!v.is_empty()).then(|| v.to_ascii_lowercase())
        },
        "suffix",
    )
}

fn no_regex_rules<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    let raw = raw_rules(d, &["rules", "rule"])?;
    if raw.is_empty() {
        return Ok(());
    }
    Err(de::Error::custom(
        "regex_match is not supported by this build yet: use exact_match, child_match or suffix_match",
    ))
}
