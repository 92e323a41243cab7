//! `type: route_client`: picks the next escaper by the client's address: `exact_match`, then
//! the longest `subnet_match`, else `default_next`.

use std::sync::Arc;

use g3proxy_shared::config::escapers::RouteClientConfig;

use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;

pub struct RouteClientEscaper {
    by_client: IpRoutes,
    default_next: Arc<Escaper>,
}

impl RouteClientEscaper {
    pub fn build(config: &RouteClientConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(RouteClientEscaper {
            by_client: IpRoutes::new(
                by_value(&config.exact_match, deps),
                by_value(&config.subnet_match, deps),
            ),
            default_next: deps.escaper(&config.default_next),
        })
    }
}

impl EscaperOps for RouteClientEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let next = self.by_client.lookup(leg.client_ip());
        Ok(Some(next.unwrap_or(&self.default_next)))
    }
}
