//! Resolvers: turn a domain into addresses for escapers. One file per config `type`.

mod c_ares;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use g3proxy_shared::config::ResolverConfig;
use g3proxy_shared::config::escapers::QueryStrategy;

use crate::error::{Forbidden, TaskError};

pub enum Resolver {
    CAres(c_ares::CAresResolver),
    /// The stand-in for a resolver the config names but lacks: every lookup is refused.
    DenyAll(String),
}

impl Resolver {
    /// The resolver called `name`, or a deny-all stand-in when the config lacks it.
    pub fn named(resolvers: &HashMap<String, Arc<Resolver>>, name: &str) -> Arc<Resolver> {
        resolvers
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Resolver::DenyAll(name.to_string())))
    }

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
            Resolver::DenyAll(name) => {
                Err(TaskError::Policy(Forbidden::MissingResolver(name.clone())))
            }
        }
    }
}
