//! What the route types share: their rules turned into the escapers they lead to, and the
//! address rules (exact addresses, then the longest matching network, `host_match.rs`) that
//! `route_upstream`, `route_client`, `route_resolved` and `route_geoip` look addresses up
//! in.

use std::sync::Arc;

use super::{Dependencies, Escaper};
use crate::host_match::IpMatcher;

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

/// The address rules of the routes: the escaper each address or network leads to.
pub type IpRoutes = IpMatcher<Arc<Escaper>>;
