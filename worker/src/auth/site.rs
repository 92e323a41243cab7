//! A user's `explicit_sites` at run time: which site a target belongs to, found as g3 finds
//! it, on the host as the client asked for it (a name is never resolved for this): an
//! address by its exact entry, else the longest subnet holding it; a name by its exact
//! entry, else its nearest listed parent domain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::Host;
use g3proxy_shared::config::escapers::ResolveStrategy;
use g3proxy_shared::config::tls::TlsClientConfig;
use g3proxy_shared::config::user_groups::{DurationStats, ExplicitSite};
use g3proxy_shared::types::acl::ExactHost;

use crate::host_match::{IpMatcher, nearest_ancestor};

/// One site of a user: what its tasks run with in place of the user's settings.
pub struct Site {
    pub id: Arc<str>,
    /// `emit_stats`: the user's tasks toward it have `user.site.<id>.*` series.
    pub emit_stats: bool,
    pub resolve_strategy: Option<ResolveStrategy>,
    pub rsp_header_timeout: Option<Duration>,
    pub tls_client: Option<TlsClientConfig>,
    /// The quantiles of its `task.ready.duration` and their window.
    pub duration_stats: DurationStats,
}

/// Every site of a user, indexed for the lookup of each request.
pub struct Sites {
    ips: IpMatcher<Arc<Site>>,
    exact_domains: HashMap<String, Arc<Site>>,
    child_domains: HashMap<String, Arc<Site>>,
}

impl Sites {
    /// `None` for a user without sites (the common case costs one branch per request).
    pub fn new(configs: &[ExplicitSite]) -> Option<Sites> {
        if configs.is_empty() {
            return None;
        }
        let (mut exact_ips, mut subnets) = (Vec::new(), Vec::new());
        let (mut exact_domains, mut child_domains) = (HashMap::new(), HashMap::new());
        for config in configs {
            let site = Arc::new(Site {
                id: config.id.as_str().into(),
                emit_stats: config.emit_stats,
                resolve_strategy: config.resolve_strategy,
                rsp_header_timeout: config.http_rsp_header_recv_timeout.map(|t| t.0),
                tls_client: config.tls_client.clone(),
                duration_stats: config.duration_stats.clone().unwrap_or_default(),
            });
            for host in &config.exact_match {
                match host {
                    ExactHost::Ip(ip) => exact_ips.push((*ip, site.clone())),
                    ExactHost::Domain(domain) => {
                        exact_domains.insert(domain.clone(), site.clone());
                    }
                }
            }
            for child in &config.child_match {
                child_domains.insert(child.0.clone(), site.clone());
            }
            for network in &config.subnet_match {
                subnets.push((*network, site.clone()));
            }
        }
        Some(Sites {
            ips: IpMatcher::new(exact_ips, subnets),
            exact_domains,
            child_domains,
        })
    }

    /// The site `host` belongs to.
    pub fn find(&self, host: &Host) -> Option<&Arc<Site>> {
        match host {
            Host::Ip(ip) => self.ips.lookup(*ip),
            Host::Domain(domain) => {
                let lowered;
                let mut name = domain.trim_end_matches('.');
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    lowered = name.to_ascii_lowercase();
                    name = &lowered;
                }
                self.exact_domains
                    .get(name)
                    .or_else(|| nearest_ancestor(&self.child_domains, name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(json: &str) -> Sites {
        let configs: Vec<ExplicitSite> = serde_json::from_str(json).unwrap();
        Sites::new(&configs).unwrap()
    }

    fn id(sites: &Sites, host: &str) -> Option<String> {
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Domain(host.to_string()),
        };
        sites.find(&host).map(|site| site.id.to_string())
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let sites = sites(
            r#"[
                {"id": "wide", "subnet_match": ["10.0.0.0/8", "127.0.0.1"], "child_match": "example.net"},
                {"id": "narrow", "subnet_match": "10.1.0.0/16", "child_match": "a.example.net"},
                {"id": "exact", "exact_match": ["10.1.2.3", "b.a.example.net", "::ffff:10.9.9.9"]}
            ]"#,
        );
        assert_eq!(id(&sites, "10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(id(&sites, "10.1.0.1").as_deref(), Some("narrow"));
        assert_eq!(id(&sites, "10.1.2.3").as_deref(), Some("exact"));
        assert_eq!(id(&sites, "10.9.9.9").as_deref(), Some("exact"));
        assert_eq!(id(&sites, "::ffff:10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(id(&sites, "127.0.0.1").as_deref(), Some("wide"));
        assert_eq!(id(&sites, "example.net").as_deref(), Some("wide"));
        assert_eq!(id(&sites, "x.Example.NET.").as_deref(), Some("wide"));
        assert_eq!(id(&sites, "c.a.example.net").as_deref(), Some("narrow"));
        assert_eq!(id(&sites, "b.a.example.net").as_deref(), Some("exact"));
        assert_eq!(id(&sites, "notexample.net"), None);
        assert_eq!(id(&sites, "192.0.2.1"), None);
        // A name is not resolved to find its site.
        assert_eq!(id(&sites, "localhost"), None);
    }
}
