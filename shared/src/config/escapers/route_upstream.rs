//! Config of `type: route_upstream`: the next escaper chosen by the target host. An address
//! is looked up in `exact_match`, then `subnet_match` (longest prefix); a domain in
//! `exact_match`, then `child_match` (the domain or one under it, longest first), then
//! `suffix_match` (alias `radix_match`, a plain string suffix); anything else goes to
//! `default_next`. Each rule set is a list of `{next, hosts|subnets|domains|suffixes}` or a
//! map of next escaper to values (g3proxy reads both for its builders); a value listed for
//! two escapers is refused.

use std::collections::BTreeMap;
use std::fmt;

use g3proxy_proto::Host;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::EscaperKind;
use crate::config::de::NAMES_AS_KEYS;
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

/// A rule set as written: next escaper → the values under one of `keys`.
struct RulesVisitor {
    keys: &'static [&'static str],
}

type RawRules = BTreeMap<String, Vec<String>>;

/// One value or a list. Written out rather than left to the loader's own "one value is a
/// list of one", which a map read as a plain `BTreeMap` does not pass through.
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![text.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<String>()? {
                    values.push(value);
                }
                Ok(OneOrMany(values))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

impl<'de> Visitor<'de> for RulesVisitor {
    type Value = RawRules;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a list of {{next, {}}} or a map of next escaper to values",
            self.keys[0]
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawRules, E> {
        Ok(RawRules::new())
    }

    /// `{escaper_name: [values]}`: the keys are escaper names, as written.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRules, A::Error> {
        let mut rules = RawRules::new();
        while let Some((next, values)) = map.next_entry::<String, OneOrMany>()? {
            rules.entry(next).or_default().extend(values.0);
        }
        Ok(rules)
    }

    /// `[{next: name, hosts: [values]}]`: config keys, compared as every key is.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRules, A::Error> {
        let mut rules = RawRules::new();
        while let Some(rule) = seq.next_element::<BTreeMap<String, OneOrMany>>()? {
            let mut next = None;
            let mut values = Vec::new();
            for (key, value) in rule {
                let key = crate::config::normalize_key(&key);
                if key == "next" || key == "escaper" {
                    match <[String; 1]>::try_from(value.0) {
                        Ok([name]) => next = Some(name),
                        Err(_) => return Err(de::Error::custom("next names one escaper")),
                    }
                } else if self.keys.contains(&key.as_str()) {
                    values.extend(value.0);
                } else {
                    return Err(de::Error::custom(format!(
                        "unknown key {key}: a rule here has next and {}",
                        self.keys.join(" or ")
                    )));
                }
            }
            let next = next.ok_or_else(|| de::Error::custom("a rule without next"))?;
            rules.entry(next).or_default().extend(values);
        }
        Ok(rules)
    }
}

fn raw_rules<'de, D: Deserializer<'de>>(
    deserializer: D,
    keys: &'static [&'static str],
) -> Result<RawRules, D::Error> {
    deserializer.deserialize_newtype_struct(NAMES_AS_KEYS, RulesVisitor { keys })
}

/// Parses every value; a value listed for two different escapers is refused, as g3proxy
/// does, since which one won would depend on the order of the file.
fn convert<T: PartialEq + fmt::Debug, E: de::Error>(
    rules: RawRules,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<(String, Vec<T>)>, E> {
    let mut converted: Vec<(String, Vec<T>)> = Vec::new();
    for (next, values) in rules {
        let mut parsed = Vec::with_capacity(values.len());
        for value in &values {
            let item =
                parse(value).ok_or_else(|| E::custom(format!("invalid {what} {value:?}")))?;
            if let Some((other, _)) = converted.iter().find(|(_, items)| items.contains(&item)) {
                return Err(E::custom(format!(
                    "{what} {value:?} is listed for both {other} and {next}"
                )));
            }
            parsed.push(item);
        }
        converted.push((next, parsed));
    }
    Ok(converted)
}

/// A domain as rules compare it: lower case, without a leading or trailing dot.
fn domain(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = text.strip_prefix('.').unwrap_or(text);
    match Host::parse_uri_host(text)? {
        Host::Domain(domain) => Some(domain),
        Host::Ip(_) => None,
    }
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

fn subnet_rules<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<IpNetwork>)>, D::Error> {
    let raw = raw_rules(d, &["subnets", "subnet", "networks", "network"])?;
    // Targets are compared in their IPv4 form, so an IPv4-mapped subnet is written as IPv4.
    convert(
        raw,
        |v| v.parse::<IpNetwork>().ok().map(IpNetwork::unmapped),
        "subnet",
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
