//! `type: route_resolved`: picks the next escaper by the target's address, a name resolved
//! first as Happy Eyeballs resolves (the preferred family within `resolution_delay`, see
//! [`TargetAddress`], which `route_geoip` shares): the longest `lpm_match` network of the
//! first address, else `default_next`. A name that does not resolve fails the task, as it
//! would fail at a direct escaper.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::Host;
use g3proxy_shared::config::escapers::{
    PickStrategy, ResolveStrategy, RouteResolvedConfig, TargetResolution,
};

use super::rules::{IpRoutes, by_value};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::resolvers::Resolver;

pub struct RouteResolvedEscaper {
    resolution: TargetAddress,
    by_address: IpRoutes,
    default_next: Arc<Escaper>,
}

impl RouteResolvedEscaper {
    pub fn build(config: &RouteResolvedConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(RouteResolvedEscaper {
            resolution: TargetAddress::build(&config.resolution, deps),
            by_address: IpRoutes::new(Vec::new(), by_value(&config.lpm_match, deps)),
            default_next: deps.escaper(&config.default_next),
        })
    }
}

/// How the routes that go by the target's address find it (`route_resolved`,
/// `route_geoip`).
pub struct TargetAddress {
    resolver: Arc<Resolver>,
    strategy: ResolveStrategy,
    resolution_delay: Duration,
}

impl TargetAddress {
    pub fn build(config: &TargetResolution, deps: &Dependencies) -> TargetAddress {
        TargetAddress {
            resolver: deps.resolver(&config.resolver),
            strategy: config.resolve_strategy,
            resolution_delay: config.resolution_delay.0,
        }
    }

    /// The address itself, or one of a name's (the first, or one at random with `pick:
    /// random`), resolved as Happy Eyeballs resolves (the preferred family within
    /// `resolution_delay`); `None` for a name without addresses.
    pub async fn of(&self, host: &Host) -> Result<Option<IpAddr>, TaskError> {
        let addresses = match host {
            Host::Ip(ip) => return Ok(Some(ip.to_canonical())),
            Host::Domain(domain) => self
                .resolver
                .happy_eyeballs(domain, self.strategy.query, self.resolution_delay)
                .await
                .map_err(|error| TaskError::Resolver(format!("{domain}: {error}")))?,
        };
        let index = match self.strategy.pick {
            PickStrategy::First => 0,
            PickStrategy::Random => crate::pick::random_index(addresses.len()),
        };
        Ok(addresses.get(index).map(|ip| ip.to_canonical()))
    }
}

impl EscaperOps for RouteResolvedEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let ip = self.resolution.of(&leg.target.host).await?;
        let next = ip.and_then(|ip| self.by_address.lookup(ip));
        Ok(Some(next.unwrap_or(&self.default_next)))
    }
}
