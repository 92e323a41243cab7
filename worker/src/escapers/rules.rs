//! What the route types share: their rules turned into the escapers they lead to, and the
//! address rules (exact addresses, then the longest matching network) that
//! `route_upstream`, `route_client` and `route_resolved` look addresses up in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use g3proxy_shared::types::IpNetwork;

use super::{Dependencies, Escaper};

/// Each value of a rule set with the escaper it leads to.
pub fn by_value<T: Clone>(
    rules: &[(String, Vec<T>)],
    deps: &Dependencies,
) -> Vec<(T, Arc<Escaper>)> {
    rules
        .iter()
        .flat_map(|(next, values)| {
            let escaper = deps.escaper(next);
            values.iter().map(move |v| (v.clone(), escaper.clone()))
        })
        .collect()
}

/// Exact addresses, then networks by longest prefix; IPv4-mapped addresses as IPv4.
pub struct IpRoutes {
    exact: HashMap<IpAddr, Arc<Escaper>>,
    /// Longest prefix first.
    networks: Vec<(IpNetwork, Arc<Escaper>)>,
}

impl IpRoutes {
    pub fn new(
        exact: Vec<(IpAddr, Arc<Escaper>)>,
        mut networks: Vec<(IpNetwork, Arc<Escaper>)>,
    ) -> IpRoutes {
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix));
        IpRoutes {
            exact: exact
                .into_iter()
                .map(|(ip, next)| (ip.to_canonical(), next))
                .collect(),
            networks,
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Escaper>> {
        let ip = ip.to_canonical();
        self.exact.get(&ip).or_else(|| {
            self.networks
                .iter()
                .find(|(net, _)| net.contains(ip))
                .map(|(_, next)| next)
        })
    }
}
