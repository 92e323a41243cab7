//! `type: route_upstream`: picks the next escaper by the target host, as g3proxy does: an
//! address by `exact_match`, then the longest `subnet_match`; a domain by `exact_match`, then
//! the nearest `child_match` ancestor (the domain itself included), then the longest
//! `suffix_match`; else `default_next`.

use std::collections::HashMap;
use std::sync::Arc;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::escapers::RouteUpstreamConfig;

use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::host_match::nearest_ancestor;

pub struct RouteUpstreamEscaper {
    /// `exact_match` addresses and `subnet_match`.
    by_ip: IpRoutes,
    exact_domain: HashMap<String, Arc<Escaper>>,
    /// `example.net` → next: matches `example.net` and `*.example.net`.
    children: HashMap<String, Arc<Escaper>>,
    /// Longest suffix first.
    suffixes: Vec<(String, Arc<Escaper>)>,
    default_next: Arc<Escaper>,
}

impl RouteUpstreamEscaper {
    pub fn build(config: &RouteUpstreamConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let mut exact_ip = Vec::new();
        let mut exact_domain = HashMap::new();
        for (host, escaper) in by_value(&config.exact_match, deps) {
            match host {
                Host::Ip(ip) => exact_ip.push((ip, escaper)),
                Host::Domain(domain) => {
                    exact_domain.insert(domain, escaper);
                }
            };
        }
        let by_ip = IpRoutes::new(exact_ip, by_value(&config.subnet_match, deps));
        let children = by_value(&config.child_match, deps).into_iter().collect();
        let mut suffixes = by_value(&config.suffix_match, deps);
        suffixes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Ok(RouteUpstreamEscaper {
            by_ip,
            exact_domain,
            children,
            suffixes,
            default_next: deps.escaper(&config.default_next),
        })
    }

    fn by_domain(&self, domain: &str) -> Option<&Arc<Escaper>> {
        let lower = domain.to_ascii_lowercase();
        let domain = lower.strip_suffix('.').unwrap_or(&lower);
        if let Some(next) = self.exact_domain.get(domain) {
            return Some(next);
        }
        if let Some(next) = nearest_ancestor(&self.children, domain) {
            return Some(next);
        }
        self.suffixes
            .iter()
            .find(|(suffix, _)| domain.ends_with(suffix.as_str()))
            .map(|(_, next)| next)
    }
}

impl RouteUpstreamEscaper {
    fn next_of(&self, target: &HostPort) -> &Escaper {
        let next = match &target.host {
            Host::Ip(ip) => self.by_ip.lookup(*ip),
            Host::Domain(domain) => self.by_domain(domain),
        };
        next.unwrap_or(&self.default_next)
    }
}

impl EscaperOps for RouteUpstreamEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        Ok(Some(self.next_of(leg.target)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use g3proxy_shared::types::IpNetwork;

    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().expect("network")
    }

    #[test]
    fn rules_apply_in_g3proxys_order() {
        let config = RouteUpstreamConfig {
            default_next: "default".into(),
            exact_match: vec![(
                "exact".into(),
                vec![
                    Host::Domain("a.example.net".into()),
                    Host::Ip("10.1.1.1".parse().unwrap()),
                ],
            )],
            subnet_match: vec![
                ("wide".into(), vec![net("10.0.0.0/8")]),
                (
                    "narrow".into(),
                    vec![net("10.1.0.0/16"), net("::ffff:0:0/96")],
                ),
            ],
            child_match: vec![
                ("child".into(), vec!["example.net".into()]),
                ("deeper".into(), vec!["b.example.net".into()]),
            ],
            suffix_match: vec![("suffix".into(), vec!["-internal".into(), "net".into()])],
            regex_match: (),
        };
        let (resolvers, escapers) = (HashMap::new(), HashMap::new());
        let deps = Dependencies {
            resolvers: &resolvers,
            escapers: &escapers,
            escape_log: None,
        };
        let route = RouteUpstreamEscaper::build(&config, &deps).unwrap();
        let next = |host: &str| {
            let target = HostPort {
                host: Host::parse_uri_host(host).unwrap(),
                port: 80,
            };
            route.next_of(&target).name.to_string()
        };
        assert_eq!(next("a.example.net"), "exact");
        assert_eq!(next("A.Example.NET"), "exact");
        assert_eq!(next("example.net"), "child");
        assert_eq!(next("x.a.example.net"), "child");
        assert_eq!(next("x.b.example.net"), "deeper");
        assert_eq!(next("xexample.net"), "suffix");
        assert_eq!(next("db-internal"), "suffix");
        assert_eq!(next("example.org"), "default");
        assert_eq!(next("10.1.1.1"), "exact");
        assert_eq!(next("10.1.2.3"), "narrow");
        assert_eq!(next("10.2.0.1"), "wide");
        assert_eq!(next("[::ffff:10.1.0.1]"), "narrow");
        assert_eq!(next("192.0.2.1"), "default");
    }
}
