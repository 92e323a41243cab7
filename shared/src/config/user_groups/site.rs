//! A user's `explicit_sites`: targets singled out by exact host, parent domain or subnet,
//! each with an `id` that names its own metrics (`emit_stats`) and settings that apply to
//! the user's tasks toward it in place of the user's (`resolve_strategy`,
//! `http_rsp_header_recv_timeout`, `tls_client` for https forward). As in g3, one exact host,
//! child domain or subnet belongs to one site at most; overlaps between kinds are fine (the
//! most specific match wins at run time).

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::config::escapers::ResolveStrategy;
use crate::config::tls::TlsClientConfig;
use crate::types::HumanDuration;
use crate::types::IpNetwork;
use crate::types::acl::{ChildDomain, ExactHost, Items};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitSite {
    #[serde(alias = "name", deserialize_with = "site_id")]
    pub id: String,
    #[serde(default, deserialize_with = "items")]
    pub exact_match: Vec<ExactHost>,
    #[serde(default, deserialize_with = "items")]
    pub child_match: Vec<ChildDomain>,
    #[serde(default, deserialize_with = "items")]
    pub subnet_match: Vec<IpNetwork>,
    /// `user.site.<id>.*` metrics for the user's tasks toward the site.
    #[serde(default, alias = "emit_metrics")]
    pub emit_stats: bool,
    #[serde(default, alias = "duration_metrics")]
    pub duration_stats: Option<DurationStats>,
    #[serde(default)]
    pub resolve_strategy: Option<ResolveStrategy>,
    #[serde(default)]
    pub tls_client: Option<TlsClientConfig>,
    #[serde(default)]
    pub http_rsp_header_recv_timeout: Option<HumanDuration>,
}

fn items<'de, D: Deserializer<'de>, T: crate::types::acl::AclItem>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Items::<T>::deserialize(deserializer).map(|Items(items)| items)
}

/// A site's id is part of metric names: g3's metric-name characters only.
fn site_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    if id.is_empty() || !id.chars().all(crate::statsd::tag_char) {
        return Err(de::Error::custom(format!(
            "invalid site id {id:?}: letters, digits and -_./ only"
        )));
    }
    Ok(id)
}

/// `duration_stats`: the quantiles of `task.ready.duration` and how often they restart
/// (`{quantile, rotate}`, or the rotation alone).
#[derive(Debug, Clone, PartialEq)]
pub struct DurationStats {
    /// As written, since the written text is the metric's `quantile` tag.
    pub quantiles: Vec<(String, f64)>,
    pub rotate: HumanDuration,
}

impl Default for DurationStats {
    fn default() -> Self {
        DurationStats {
            quantiles: ["0.50", "0.80", "0.90", "0.95", "0.99"]
                .iter()
                .map(|q| (q.to_string(), q.parse().unwrap_or_default()))
                .collect(),
            rotate: HumanDuration(std::time::Duration::from_secs(4)),
        }
    }
}

fn quantiles(text: &str) -> Result<Vec<(String, f64)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| match q.parse::<f64>() {
            Ok(value) if (0.0..=1.0).contains(&value) => Ok((q.to_string(), value)),
            _ => Err(format!("invalid quantile {q:?}: a number from 0 to 1")),
        })
        .collect()
}

impl<'de> Deserialize<'de> for DurationStats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StatsVisitor;
        impl<'de> Visitor<'de> for StatsVisitor {
            type Value = DurationStats;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rotation duration, or a map with quantile and rotate")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationStats, E> {
                let rotate =
                    HumanDuration::deserialize(de::value::StrDeserializer::<E>::new(text))?;
                Ok(DurationStats {
                    rotate,
                    ..Default::default()
                })
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<DurationStats, E> {
                self.visit_str(&secs.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DurationStats, A::Error> {
                let mut stats = DurationStats::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "quantile" | "quantiles" => {
                            let crate::types::acl::Texts(texts) = map.next_value()?;
                            let mut all = Vec::new();
                            for text in texts {
                                all.extend(quantiles(&text).map_err(de::Error::custom)?);
                            }
                            if !all.is_empty() {
                                stats.quantiles = all;
                            }
                        }
                        "rotate" => stats.rotate = map.next_value()?,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key {other} (expected quantile or rotate)"
                            )));
                        }
                    }
                }
                Ok(stats)
            }
        }
        deserializer.deserialize_any(StatsVisitor)
    }
}

/// `explicit_sites`: the list, checked for ids and matches given twice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExplicitSites(pub Vec<ExplicitSite>);

impl<'de> Deserialize<'de> for ExplicitSites {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sites = Vec::<ExplicitSite>::deserialize(deserializer)?;
        let mut ids = HashSet::new();
        let mut exact = HashSet::new();
        let mut child = HashSet::new();
        let mut subnets = HashSet::new();
        for site in &sites {
            if !ids.insert(site.id.as_str()) {
                return Err(de::Error::custom(format!(
                    "site id {} given twice",
                    site.id
                )));
            }
            let taken = |what: String| {
                de::Error::custom(format!(
                    "{what} is in two sites (the second is {})",
                    site.id
                ))
            };
            // Within one site a repeat is harmless; across sites it would be ambiguous.
            let own: HashSet<_> = site.exact_match.iter().map(exact_key).collect();
            for key in own {
                if !exact.insert(key.clone()) {
                    return Err(taken(format!("exact_match {key}")));
                }
            }
            let own: HashSet<_> = site.child_match.iter().map(|c| c.0.clone()).collect();
            for domain in own {
                if !child.insert(domain.clone()) {
                    return Err(taken(format!("child_match {domain}")));
                }
            }
            let own: HashSet<_> = site.subnet_match.iter().map(network_key).collect();
            for (address, prefix) in own {
                if !subnets.insert((address, prefix)) {
                    return Err(taken(format!("subnet_match {address}/{prefix}")));
                }
            }
        }
        Ok(ExplicitSites(sites))
    }
}

fn exact_key(host: &ExactHost) -> String {
    match host {
        ExactHost::Ip(ip) => ip.to_canonical().to_string(),
        ExactHost::Domain(domain) => domain.clone(),
    }
}

/// A network as its masked address and prefix (`10.0.0.1/8` is `10.0.0.0/8`).
fn network_key(network: &IpNetwork) -> (std::net::IpAddr, u8) {
    use std::net::IpAddr;
    let masked = match network.address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(network.prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(network.prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    (masked, network.prefix)
}
