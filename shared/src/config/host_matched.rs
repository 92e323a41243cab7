//! g3's host-matched objects: one entry or a list, each with `exact_match` hosts,
//! `child_match` parent domains and `set_default`, beside the keys of the thing matched (a
//! site of `http_rproxy`, an allowed host of `sni_proxy`). An entry that names no host is the
//! default, as in g3. [`check`] holds what g3's loader holds: every host and every parent
//! domain once, at most one default.

use std::collections::BTreeMap;

use g3proxy_proto::Host;

/// The match keys of an entry; its struct declares them (`exact_match`, `child_match`:
/// one or a list; `set_default`).
pub trait HostMatched {
    fn exact_match(&self) -> &[String];
    fn child_match(&self) -> &[String];
    fn set_default(&self) -> bool;

    /// Marked as the default, or naming no host at all.
    fn is_default(&self) -> bool {
        self.set_default() || (self.exact_match().is_empty() && self.child_match().is_empty())
    }
}

/// The form a host is matched in: lower case, no leading or trailing dot, an IPv6 address
/// in brackets (as [`Host`] prints it).
pub fn canonical_host(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = text.strip_prefix('.').unwrap_or(text);
    Host::parse_uri_host(text).map(|host| host.to_string())
}

/// Refuses what g3 refuses in the entries of `key`: a host that is no host, a parent domain
/// that is an address, a name listed twice, two defaults.
pub fn check<T: HostMatched>(entries: &[T], key: &str) -> Result<(), String> {
    let mut seen = BTreeMap::new();
    let mut default = None;
    for (i, entry) in entries.iter().enumerate() {
        for (rule, names) in [
            ("exact_match", entry.exact_match()),
            ("child_match", entry.child_match()),
        ] {
            for name in names {
                let host = canonical_host(name).ok_or_else(|| {
                    format!("{key}[{i}].{rule}: {name:?} is not a host name or address")
                })?;
                let is_address = matches!(Host::parse_uri_host(&host), Some(Host::Ip(_)));
                if rule == "child_match" && is_address {
                    return Err(format!(
                        "{key}[{i}].child_match: {name:?} is an address, not a parent domain"
                    ));
                }
                if let Some(first) = seen.insert((rule, host), i) {
                    return Err(format!(
                        "{key}[{i}].{rule}: {name:?} is listed twice (also in {key}[{first}])"
                    ));
                }
            }
        }
        if entry.is_default() {
            if let Some(first) = default {
                return Err(format!(
                    "{key}[{i}] is a second default after {key}[{first}] (an entry with set_default, or without exact_match and child_match, is the default)"
                ));
            }
            default = Some(i);
        }
    }
    Ok(())
}
