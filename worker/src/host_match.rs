//! Matching a host against configured hosts as g3proxy's host-matched objects do: the exact
//! host first, then the nearest listed parent domain (`child_match`, the domain itself
//! included), then the default entry. Hosts compare in lower case without a trailing dot.

use std::collections::HashMap;

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
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host.strip_prefix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

pub struct HostMatcher<T> {
    exact: HashMap<String, T>,
    children: HashMap<String, T>,
    default: Option<T>,
}

impl<T: Clone> HostMatcher<T> {
    pub fn new() -> Self {
        HostMatcher {
            exact: HashMap::new(),
            children: HashMap::new(),
            default: None,
        }
    }

    /// Adds one entry: its exact hosts, its parent domains, and whether it is the default.
    pub fn add(&mut self, exact: &[String], children: &[String], is_default: bool, value: T) {
        for host in exact {
            self.exact.insert(normalized(host), value.clone());
        }
        for domain in children {
            self.children.insert(normalized(domain), value.clone());
        }
        if is_default {
            self.default = Some(value);
        }
    }

    pub fn get(&self, host: &str) -> Option<&T> {
        let host = normalized(host);
        self.exact
            .get(&host)
            .or_else(|| nearest_ancestor(&self.children, &host))
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_nearest_parent_then_default() {
        let mut hosts = HostMatcher::new();
        hosts.add(&["www.example.net".into()], &[], false, "exact");
        hosts.add(&[], &["example.net".into()], false, "parent");
        hosts.add(&[], &[".a.example.net".into()], false, "nearer");
        assert_eq!(hosts.get("WWW.example.net."), Some(&"exact"));
        assert_eq!(hosts.get("example.net"), Some(&"parent"));
        assert_eq!(hosts.get("x.www.example.net"), Some(&"parent"));
        assert_eq!(hosts.get("x.a.example.net"), Some(&"nearer"));
        assert_eq!(hosts.get("example.org"), None);
        hosts.add(&[], &[], true, "default");
        assert_eq!(hosts.get("example.org"), Some(&"default"));
    }
}
