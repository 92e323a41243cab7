//! Resolvers: turn a domain into addresses for escapers. One file per config `type`.

mod c_ares;

use std::net::IpAddr;

use g3proxy_shared::config::ResolverConfig;
use g3proxy_shared::config::escapers::QueryStrategy;

use crate::error::TaskError;

pub enum Resolver {
    CAres(c_ares::CAresResolver),
}

impl Resolver {
    pub fn build(config: &ResolverConfig) -> anyhow::Result<Resolver> {
        Ok(match config {
            ResolverConfig::CAres(c) => Resolver::CAres(c_ares::CAresResolver::build(c)?),
        })
    }

    /// Addresses of `domain`, the preferred family first, as `strategy` asks.
    pub async fn resolve(
        &self,
        domain: &str,
        strategy: QueryStrategy,
    ) -> Result<Vec<IpAddr>, TaskError> {
        match self {
            Resolver::CAres(r) => r.resolve(domain, strategy).await,
        }
    }
}
