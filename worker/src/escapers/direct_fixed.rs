//! `type: direct_fixed`: resolve, check every address against the egress network filter, then
//! connect straight to the target from a configured bind address, by Happy Eyeballs (both
//! families raced as `happy_eyeballs` says, see `connect.rs`). The socket gets the escaper's
//! device, keepalive and `tcp_misc_opts`; the relay gets its `tcp_sock_speed_limit`, and the
//! target a PROXY protocol header first when `use_proxy_protocol` asks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::escapers::{DirectFixedConfig, PickStrategy};
use g3proxy_shared::config::servers::ProxyProtocol;
use g3proxy_shared::types::NetworkAcl;
use tokio::net::UdpSocket;

use super::connect::{Racing, SocketOptions, happy_eyeballs};
use super::{Connected, Dependencies, EscaperOps};
use crate::error::TaskError;
use crate::pick::random_index;
use crate::resolvers::Resolver;

pub struct DirectFixedEscaper {
    config: DirectFixedConfig,
    egress: NetworkAcl,
    resolver: Arc<Resolver>,
    options: SocketOptions,
}

impl DirectFixedEscaper {
    pub fn build(config: &DirectFixedConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let egress = NetworkAcl::egress(config.egress_network_filter.as_ref());
        Ok(DirectFixedEscaper {
            config: config.clone(),
            egress,
            resolver: deps.resolver(&config.resolver),
            options: SocketOptions {
                interface: config.bind_interface.clone(),
                keepalive: config.tcp_keepalive,
                misc: config.tcp_misc_opts.clone(),
            },
        })
    }

    /// Whether `ip` may be connected to: its family is not turned off, and the egress filter
    /// allows it.
    fn allowed(&self, ip: IpAddr) -> Result<(), TaskError> {
        if self.config.no_ipv4 && ip.is_ipv4() || self.config.no_ipv6 && ip.is_ipv6() {
            return Err(TaskError::Resolver(format!(
                "{ip}: its address family is turned off (no_ipv4 / no_ipv6)"
            )));
        }
        match self.egress.check_target(ip).is_permitted() {
            true => Ok(()),
            false => Err(TaskError::forbidden_ip(ip)),
        }
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

    fn order(&self, addresses: &mut [IpAddr]) {
        if self.config.resolve_strategy.pick == PickStrategy::Random {
            let start = random_index(addresses.len());
            addresses.rotate_left(start);
        }
    }

    /// The addresses a datagram for `target` may go to, resolved and filtered.
    async fn udp_addresses(&self, target: &HostPort) -> Result<Vec<IpAddr>, TaskError> {
        let mut addresses = match &target.host {
            Host::Ip(ip) => vec![ip.to_canonical()],
            Host::Domain(domain) => {
                self.resolver
                    .resolve(domain, self.config.resolve_strategy.query)
                    .await?
            }
        };
        let Some(&first) = addresses.first() else {
            return Err(TaskError::Resolver(format!(
                "{}: no usable address",
                target.host
            )));
        };
        addresses.retain(|ip| self.allowed(*ip).is_ok());
        if addresses.is_empty() {
            self.allowed(first)?;
        }
        self.order(&mut addresses);
        Ok(addresses)
    }
}

impl EscaperOps for DirectFixedEscaper {
    fn resolves_names(&self) -> bool {
        true
    }

    fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        self.config.use_proxy_protocol
    }

    async fn tcp_connect(&self, target: &HostPort) -> Result<Connected, TaskError> {
        let racing = Racing {
            resolver: &self.resolver,
            strategy: self.config.resolve_strategy.query,
            config: &self.config.happy_eyeballs,
            tcp_connect: &self.config.tcp_connect,
            options: &self.options,
            allowed: &|ip| self.allowed(ip),
            bind: &|ip| self.bind_address(ip),
            order: &|addresses| self.order(addresses),
        };
        let mut connected = happy_eyeballs(&racing, target).await?;
        connected.speed_limit = self.config.tcp_sock_speed_limit;
        Ok(connected)
    }

    /// Where a datagram for `target` goes: resolved, filtered, the first allowed address.
    async fn udp_target(&self, target: &HostPort) -> Result<SocketAddr, TaskError> {
        let addresses = self.udp_addresses(target).await?;
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
