//! `type: c-ares`: DNS through c-ares on its own event thread. Name servers come from the
//! config, or from the system's resolv.conf; `/etc/hosts` is consulted as the system does.
//! Answers are kept by the cache in front of every resolver ([`super::Resolver`]); the c-ares
//! this build links (the system's, 1.18) has no cache of its own.

use std::net::IpAddr;

use c_ares::{AddrInfoFlags, AddrInfoHints, AddressFamily};
use c_ares_resolver::{FutureResolver, Options};
use g3proxy_shared::config::resolvers::{CAresConfig, CacheTtl};

use super::Family;
use super::record::{DriverError, Record, ResolveError, ServerError};

pub struct CAresDriver {
    inner: FutureResolver,
    ttl: CacheTtl,
}

impl CAresDriver {
    pub fn build(config: &CAresConfig, ttl: CacheTtl) -> anyhow::Result<Self> {
        let mut options = Options::new();
        options
            .set_timeout(config.each_timeout.0)
            .set_tries(config.each_tries);
        if config.round_robin {
            options.set_rotate();
        }
        if let Some(size) = config.socket_send_buffer_size {
            options.set_sock_send_buffer_size(u32::try_from(size.0).unwrap_or(u32::MAX));
        }
        if let Some(size) = config.socket_recv_buffer_size {
            options.set_sock_receive_buffer_size(u32::try_from(size.0).unwrap_or(u32::MAX));
        }
        let inner = FutureResolver::with_options(options)?;
        if !config.server.0.is_empty() {
            let servers: Vec<String> = config.server.0.iter().map(|s| s.to_string()).collect();
            inner
                .set_servers(&servers)
                .map_err(|e| anyhow::anyhow!("invalid servers: {e}"))?;
        }
        if let Some(ip) = config.bind_ipv4 {
            inner.set_local_ipv4(ip);
        }
        if let Some(ip) = config.bind_ipv6 {
            inner.set_local_ipv6(ip);
        }
        Ok(CAresDriver { inner, ttl })
    }

    pub async fn query(&self, domain: &str, family: Family) -> Record {
        let hints = AddrInfoHints {
            // No sorting: c-ares would probe each address with a connect() of its own.
            flags: AddrInfoFlags::NOSORT,
            family: Some(match family {
                Family::V4 => AddressFamily::INET,
                Family::V6 => AddressFamily::INET6,
            }),
            // One entry per address instead of one per socket type.
            socktype: libc::SOCK_STREAM,
            protocol: 0,
        };
        match self.inner.get_addrinfo(domain, None, &hints).await {
            Ok(results) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                let mut ttl = u32::MAX;
                for node in results.nodes() {
                    if let Some(ip) = node.ip_addr()
                        && !ips.contains(&ip)
                    {
                        ips.push(ip);
                        // RFC 2181: one TTL for a whole set; the smallest if they differ.
                        ttl = ttl.min(u32::try_from(node.ttl()).unwrap_or(0));
                    }
                }
                match ips.is_empty() {
                    true => Record::negative(Ok(ips), self.ttl.negative_min_ttl),
                    false => Record::resolved(ips, ttl, &self.ttl),
                }
            }
            Err(c_ares::Error::ENODATA) => {
                Record::negative(Ok(Vec::new()), self.ttl.negative_min_ttl)
            }
            Err(e) => Record::failed(error_of(e), self.ttl.negative_min_ttl),
        }
    }
}

fn error_of(error: c_ares::Error) -> ResolveError {
    use c_ares::Error as E;
    match error {
        E::ENOTFOUND => ResolveError::Server(ServerError::NotFound),
        E::ESERVFAIL => ResolveError::Server(ServerError::ServFail),
        E::EFORMERR => ResolveError::Server(ServerError::FormErr),
        E::ENOTIMP => ResolveError::Server(ServerError::NotImp),
        E::EREFUSED => ResolveError::Server(ServerError::Refused),
        E::EBADNAME => ResolveError::Driver(DriverError::BadName),
        E::EBADRESP => ResolveError::Driver(DriverError::BadResp),
        E::ECONNREFUSED => ResolveError::Driver(DriverError::ConnRefused),
        E::ETIMEOUT => ResolveError::Driver(DriverError::Timeout),
        other => ResolveError::Driver(DriverError::Internal(other.to_string())),
    }
}
