//! `type: direct_fixed`: resolve, check every address against the egress network filter, then
//! connect straight to the target from a configured bind address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::escapers::{DirectFixedConfig, PickStrategy};
use g3proxy_shared::types::NetworkAcl;
use tokio::net::UdpSocket;

use super::{Connected, Dependencies, EscaperOps, connect_first};
use crate::error::TaskError;
use crate::pick::random_index;
use crate::resolvers::Resolver;

pub struct DirectFixedEscaper {
    config: DirectFixedConfig,
    egress: NetworkAcl,
    resolver: Arc<Resolver>,
}

impl DirectFixedEscaper {
    pub fn build(config: &DirectFixedConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let egress = NetworkAcl::egress(config.egress_network_filter.as_ref());
        Ok(DirectFixedEscaper {
            config: config.clone(),
            egress,
            resolver: deps.resolver(&config.resolver),
        })
    }

    async fn candidates(&self, target: &HostPort) -> Result<Vec<IpAddr>, TaskError> {
        let mut addresses = match &target.host {
            Host::Ip(ip) => vec![ip.to_canonical()],
            Host::Domain(domain) => {
                self.resolver
                    .resolve(domain, self.config.resolve_strategy.query)
                    .await?
            }
        };
        addresses.retain(|ip| {
            !(self.config.no_ipv4 && ip.is_ipv4() || self.config.no_ipv6 && ip.is_ipv6())
        });
        let Some(&first) = addresses.first() else {
            return Err(TaskError::Resolver(format!(
                "{}: no usable address",
                target.host
            )));
        };
        addresses.retain(|ip| self.egress.check(*ip).is_permitted());
        if addresses.is_empty() {
            return Err(TaskError::forbidden_ip(first));
        }
        if self.config.resolve_strategy.pick == PickStrategy::Random {
            let start = random_index(addresses.len());
            addresses.rotate_left(start);
        }
        Ok(addresses)
    }

    fn bind_address(&self, target: IpAddr) -> Option<IpAddr> {
        let same_family: Vec<IpAddr> = self
            .config
            .bind_ip
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == target.is_ipv4())
            .collect();
        (!same_family.is_empty()).then(|| same_family[random_index(same_family.len())])
    }
}

impl EscaperOps for DirectFixedEscaper {
    fn resolves_names(&self) -> bool {
        true
    }

    async fn tcp_connect(&self, target: &HostPort) -> Result<Connected, TaskError> {
        let addresses = self.candidates(target).await?;
        let bind = |ip| self.bind_address(ip);
        connect_first(addresses, target.port, bind, &self.config.tcp_connect).await
    }

    /// Where a datagram for `target` goes: resolved, filtered, the first allowed address.
    async fn udp_target(&self, target: &HostPort) -> Result<SocketAddr, TaskError> {
        let addresses = self.candidates(target).await?;
        // candidates() never answers an empty list.
        let ip = addresses
            .first()
            .copied()
            .ok_or_else(|| TaskError::Resolver(format!("{}: no usable address", target.host)))?;
        Ok(SocketAddr::new(ip, target.port))
    }

    /// A UDP socket of `target`'s family, bound to a configured address of that family.
    fn udp_bind(&self, target: SocketAddr) -> Result<UdpSocket, TaskError> {
        let bind = self
            .bind_address(target.ip())
            .unwrap_or(if target.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            });
        let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(UdpSocket::from_std)
            .map_err(|e| TaskError::Internal(format!("udp bind {bind}: {e}")))?;
        Ok(socket)
    }
}
