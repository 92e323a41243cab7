//! Route rules as g3proxy writes them, for every route type: a rule set is a list of
//! `{next, <values key>: [values]}` or a map of next escaper to values (g3proxy reads both for
//! its builders); a value listed for two escapers is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use g3proxy_proto::Host;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::config::de::NAMES_AS_KEYS;
use crate::types::IpNetwork;

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

pub(super) fn raw_rules<'de, D: Deserializer<'de>>(
    deserializer: D,
    keys: &'static [&'static str],
) -> Result<RawRules, D::Error> {
    deserializer.deserialize_newtype_struct(NAMES_AS_KEYS, RulesVisitor { keys })
}

/// Parses every value; a value listed for two different escapers is refused, as g3proxy
/// does, since which one won would depend on the order of the file.
pub(super) fn convert<T: PartialEq + fmt::Debug, E: de::Error>(
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
pub(super) fn domain(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = text.strip_prefix('.').unwrap_or(text);
    match Host::parse_uri_host(text)? {
        Host::Domain(domain) => Some(domain),
        Host::Ip(_) => None,
    }
}

pub(super) fn subnet_rules<'de, D: Deserializer<'de>>(
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

/// Addresses, each the target of its rule exactly (IPv4-mapped ones as IPv4).
pub(super) fn ip_rules<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<IpAddr>)>, D::Error> {
    let raw = raw_rules(d, &["ips", "ip", "hosts", "host"])?;
    convert(
        raw,
        |v| v.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()),
        "address",
    )
}

/// The escapers a rule set leads to.
pub(super) fn nexts<T>(rules: &[(String, Vec<T>)]) -> impl Iterator<Item = &str> {
    rules.iter().map(|(next, _)| next.as_str())
}
