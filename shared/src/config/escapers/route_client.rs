//! Config of `type: route_client`: the next escaper chosen by the client's address:
//! `exact_match` (`{next, ips}`), then `subnet_match` (`{next, subnets}`, longest prefix),
//! else `default_next`.

use std::net::IpAddr;

use serde::Deserialize;

use super::EscaperKind;
use super::rules::{ip_rules, nexts, subnet_rules};
use crate::types::IpNetwork;

impl EscaperKind for RouteClientConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names = vec![self.default_next.as_str()];
        names.extend(nexts(&self.exact_match));
        names.extend(nexts(&self.subnet_match));
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteClientConfig {
    pub default_next: String,
    #[serde(default, alias = "exact_rules", deserialize_with = "ip_rules")]
    pub exact_match: Vec<(String, Vec<IpAddr>)>,
    #[serde(default, alias = "subnet_rules", deserialize_with = "subnet_rules")]
    pub subnet_match: Vec<(String, Vec<IpNetwork>)>,
}
