//! Matching a host against configured hosts as g3proxy's host-matched objects do: the exact
//! host first, then the nearest listed parent domain (`child_match`, the domain itself
//! included), then the default entry. Hosts compare in lower case without a trailing dot.
//! Addresses match as g3's rules on them do ([`IpMatcher`]): the exact address, then the
//! longest network holding it.

use std::collections::HashMap;
use std::net::IpAddr;

use g3proxy_shared::types::IpNetwork;

use g3proxy_shared::config::host_matched::{HostMatched, canonical_host};

/// The value of the nearest of `domain` and its parents that `map` lists.
pub fn nearest_ancestor<'a, T>(map: &'a HashMap<String, T>, domain: &str) -> Option<&'a T> {
    let mut rest = domain;
    loop {
        if let Some(value) = map.get(rest) {
            return Some(value);
        }
        rest = rest.split_once('.')?.1;
    }
}

fn normalized(host: &str) -> String {
    canonical_host(host).unwrap_or_else(|| host.to_ascii_lowercase())
}

/// Exact addresses, then networks by longest prefix; IPv4-mapped addresses as IPv4.
pub struct IpMatcher<T> {
    exact: HashMap<IpAddr, T>,
    /// Longest prefix first.
    networks: Vec<(IpNetwork, T)>,
}

impl<T> IpMatcher<T> {
    pub fn new(exact: Vec<(IpAddr, T)>, mut networks: Vec<(IpNetwork, T)>) -> IpMatcher<T> {
        // An address is only held by networks of its family, so prefixes of the two
        // families need no common order.
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix));
        IpMatcher {
            exact: exact
                .into_iter()
                .map(|(ip, value)| (ip.to_canonical(), value))
                .collect(),
            networks,
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let ip = ip.to_canonical();
        self.exact.get(&ip).or_else(|| {
            self.networks
                .iter()
                .find(|(net, _)| net.contains(ip))
                .map(|(_, value)| value)
        })
    }
}

pub struct HostMatcher<T> {
    exact: HashMap<String, T>,
    children: HashMap<String, T>,
    default: Option<T>,
}

impl<T: Clone> HostMatcher<T> {
    /// The matcher of config entries, each matching to `value(entry)`.
    pub fn build<E: HostMatched>(entries: &[E], value: impl Fn(&E) -> T) -> Self {
        let mut matcher = HostMatcher {
            exact: HashMap::new(),
            children: HashMap::new(),
            default: None,
        };
        for entry in entries {
            let value = value(entry);
            for host in entry.exact_match() {
                matcher.exact.insert(normalized(host), value.clone());
            }
            for domain in entry.child_match() {
                matcher.children.insert(normalized(domain), value.clone());
            }
            if entry.is_default() {
                matcher.default = Some(value);
            }
        }
        matcher
    }

    pub fn get(&self, host: &str) -> Option<&T> {
        // Lower-case names and dotted quads are their own canonical form: no copy for them.
        let canonical = !host.starts_with('.')
            && !host.ends_with('.')
            && host
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
        let host = match canonical {
            true => std::borrow::Cow::Borrowed(host),
            false => std::borrow::Cow::Owned(normalized(host)),
        };
        let host = host.as_ref();
        self.exact
            .get(host)
            .or_else(|| nearest_ancestor(&self.children, host))
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry(Vec<String>, Vec<String>, bool, &'static str);

    impl HostMatched for Entry {
        fn exact_match(&self) -> &[String] {
            &self.0
        }
        fn child_match(&self) -> &[String] {
            &self.1
        }
        fn set_default(&self) -> bool {
            self.2
        }
    }

    #[test]
    fn exact_then_nearest_parent_then_default() {
        let mut entries = vec![
            Entry(vec!["www.example.net".into()], vec![], false, "exact"),
            Entry(vec![], vec!["example.net".into()], false, "parent"),
            Entry(vec![], vec![".a.example.net".into()], false, "nearer"),
            Entry(vec!["::1".into()], vec![], false, "v6"),
        ];
        let hosts = HostMatcher::build(&entries, |e| e.3);
        assert_eq!(hosts.get("WWW.example.net."), Some(&"exact"));
        assert_eq!(hosts.get("example.net"), Some(&"parent"));
        assert_eq!(hosts.get("x.www.example.net"), Some(&"parent"));
        assert_eq!(hosts.get("x.a.example.net"), Some(&"nearer"));
        assert_eq!(hosts.get("[::1]"), Some(&"v6"));
        assert_eq!(hosts.get("example.org"), None);
        // An entry naming no host is the default.
        entries.push(Entry(vec![], vec![], false, "default"));
        let hosts = HostMatcher::build(&entries, |e| e.3);
        assert_eq!(hosts.get("example.org"), Some(&"default"));
    }
}
