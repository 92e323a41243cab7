//! `type: route_resolved`: picks the next escaper by the target's address, a name resolved
//! first as Happy Eyeballs resolves (the preferred family within `resolution_delay`): the
//! longest `lpm_match` network of the first address, else `default_next`. A name that does
//! not resolve fails the task, as it would fail at a direct escaper.

use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::Host;
use g3proxy_shared::config::escapers::{PickStrategy, ResolveStrategy, RouteResolvedConfig};

use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::resolvers::Resolver;

pub struct RouteResolvedEscaper {
    resolver: Arc<Resolver>,
    strategy: ResolveStrategy,
    resolution_delay: Duration,
    by_address: IpRoutes,
    default_next: Arc<Escaper>,
}

impl RouteResolvedEscaper {
    pub fn build(config: &RouteResolvedConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(RouteResolvedEscaper {
            resolver: deps.resolver(&config.resolver),
            strategy: config.resolve_strategy,
            resolution_delay: config.resolution_delay.0,
            by_address: IpRoutes::new(Vec::new(), by_value(&config.lpm_match, deps)),
            default_next: deps.escaper(&config.default_next),
        })
    }
}

/// The target's address as the routes that go by it see it: the address itself, or one of
/// a name's (the first, or one at random with `pick: random`), resolved as Happy Eyeballs
/// resolves (the preferred family within `resolution_delay`); `None` for a name without
/// addresses.
pub async fn target_address(
    host: &Host,
    resolver: &Arc<Resolver>,
    strategy: ResolveStrategy,
    resolution_delay: Duration,
) -> Result<Option<std::net::IpAddr>, TaskError> {
    let addresses = match host {
        Host::Ip(ip) => return Ok(Some(ip.to_canonical())),
        Host::Domain(domain) => resolver
            .happy_eyeballs(domain, strategy.query, resolution_delay)
            .await
            .map_err(|error| TaskError::Resolver(format!("{domain}: {error}")))?,
    };
    let index = match strategy.pick {
        PickStrategy::First => 0,
        PickStrategy::Random => crate::pick::random_index(addresses.len()),
    };
    Ok(addresses.get(index).map(|ip| ip.to_canonical()))
}

impl EscaperOps for RouteResolvedEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let ip = target_address(
            &leg.target.host,
            &self.resolver,
            self.strategy,
            self.resolution_delay,
        )
        .await?;
        let next = ip.and_then(|ip| self.by_address.lookup(ip));
        Ok(Some(next.unwrap_or(&self.default_next)))
    }
}
