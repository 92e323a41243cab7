//! `type: c-ares`: DNS through c-ares on its own event thread. Name servers come from the
//! config, or from the system's resolv.conf; `/etc/hosts` is consulted as the system does.

use std::net::IpAddr;

use c_ares::AddressFamily;
use c_ares_resolver::{FutureResolver, Options};
use g3proxy_shared::config::escapers::QueryStrategy;
use g3proxy_shared::config::resolvers::CAresConfig;

use crate::error::TaskError;

pub struct CAresResolver {
    inner: FutureResolver,
}

impl CAresResolver {
    pub fn build(config: &CAresConfig) -> anyhow::Result<Self> {
        let mut options = Options::new();
        options
            .set_timeout(config.each_timeout.0)
            .set_tries(config.each_tries);
        if config.round_robin {
            options.set_rotate();
        }
        let inner = FutureResolver::with_options(options)
            .map_err(|e| anyhow::anyhow!("resolver {}: {e}", config.name))?;
        if !config.server.0.is_empty() {
            let servers: Vec<String> = config.server.0.iter().map(|s| s.to_string()).collect();
            inner
                .set_servers(&servers)
                .map_err(|e| anyhow::anyhow!("resolver {}: invalid servers: {e}", config.name))?;
        }
        if let Some(ip) = config.bind_ipv4 {
            inner.set_local_ipv4(ip);
        }
        if let Some(ip) = config.bind_ipv6 {
            inner.set_local_ipv6(ip);
        }
        Ok(CAresResolver { inner })
    }

    async fn lookup(&self, domain: &str, family: AddressFamily) -> Result<Vec<IpAddr>, TaskError> {
        let results = self
            .inner
            .get_host_by_name(domain, family)
            .await
            .map_err(|e| TaskError::Resolver(format!("{domain}: {e}")))?;
        Ok(results.addresses().to_vec())
    }

    pub async fn resolve(
        &self,
        domain: &str,
        strategy: QueryStrategy,
    ) -> Result<Vec<IpAddr>, TaskError> {
        let (first, second) = match strategy {
            QueryStrategy::Ipv4Only => return self.lookup(domain, AddressFamily::INET).await,
            QueryStrategy::Ipv6Only => return self.lookup(domain, AddressFamily::INET6).await,
            QueryStrategy::Ipv4First => (AddressFamily::INET, AddressFamily::INET6),
            QueryStrategy::Ipv6First => (AddressFamily::INET6, AddressFamily::INET),
        };
        match self.lookup(domain, first).await {
            Ok(addresses) if !addresses.is_empty() => Ok(addresses),
            first_result => match self.lookup(domain, second).await {
                Ok(addresses) if !addresses.is_empty() => Ok(addresses),
                second_result => first_result.and(second_result),
            },
        }
    }
}
