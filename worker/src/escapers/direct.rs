//! What both direct escapers do (`direct_fixed.rs`, `direct_float.rs`): resolve, check every
//! address against the egress network filter, then connect straight to the target by Happy
//! Eyeballs (both families raced as `happy_eyeballs` says, see `connect.rs`). The socket gets
//! the escaper's device, keepalive and `tcp_misc_opts`; the relay gets its
//! `tcp_sock_speed_limit`, and the target a PROXY protocol header first when
//! `use_proxy_protocol` asks. Where a connection leaves from is each type's own ([`Binds`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use g3proxy_proto::Host;
use g3proxy_shared::config::escapers::{
    DirectConfig, PickStrategy, QueryStrategy, ResolveStrategy,
};
use g3proxy_shared::config::servers::ProxyProtocol;
use g3proxy_shared::types::NetworkAcl;
use tokio::net::UdpSocket;

use super::connect::{Racing, SocketOptions, happy_eyeballs};
use super::{Connected, Dependencies, Leg, LimitedSocket, PathChoice};
use crate::conn::sockopt;
use crate::error::TaskError;
use crate::pick::random_index;
use crate::resolvers::Resolver;

/// Where a direct escaper's connections leave from.
pub trait Binds {
    /// The local address for a connection to `target`, on the path the task picked if it
    /// picked one: `None` for any; an error when the escaper has no address to reach
    /// `target`'s family from (on that path).
    fn bind_for(&self, target: IpAddr, path: &PathChoice<'_>) -> Result<Option<IpAddr>, TaskError>;
}

pub struct Direct {
    config: DirectConfig,
    egress: NetworkAcl,
    resolver: Arc<Resolver>,
    options: SocketOptions,
}

impl Direct {
    pub fn build(config: &DirectConfig, deps: &Dependencies) -> Direct {
        Direct {
            config: config.clone(),
            egress: NetworkAcl::egress(config.egress_network_filter.as_ref()),
            resolver: deps.resolver(&config.resolver),
            options: SocketOptions {
                interface: config.bind_interface.clone(),
                keepalive: config.tcp_keepalive,
                misc: config.tcp_misc_opts.clone(),
            },
        }
    }

    pub fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        self.config.use_proxy_protocol
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

    /// The resolve strategy for a leg: the user's pick, and its query unless this escaper
    /// keeps to one family (as g3 adjusts an escaper's strategy to a user's).
    fn strategy(&self, leg: &Leg<'_>) -> ResolveStrategy {
        let own = self.config.resolve_strategy;
        match leg.resolve_strategy() {
            None => own,
            Some(user) => ResolveStrategy {
                query: match own.query {
                    QueryStrategy::Ipv4Only | QueryStrategy::Ipv6Only => own.query,
                    _ => user.query,
                },
                pick: user.pick,
            },
        }
    }

    fn order(pick: PickStrategy, addresses: &mut [IpAddr]) {
        if pick == PickStrategy::Random {
            let start = random_index(addresses.len());
            addresses.rotate_left(start);
        }
    }

    pub async fn tcp_connect(
        &self,
        leg: &Leg<'_>,
        binds: &(dyn Binds + Sync),
    ) -> Result<Connected, TaskError> {
        let strategy = self.strategy(leg);
        let path = leg.path_choice();
        // A user's `tcp_connect` may only make it shorter.
        let tcp_connect = match leg.user_config().and_then(|user| user.tcp_connect) {
            None => self.config.tcp_connect,
            Some(user) => self.config.tcp_connect.bounded_by(&user),
        };
        let adjusted;
        let options = match leg.user_config() {
            Some(user)
                if user.tcp_remote_keepalive.is_some() || user.tcp_remote_misc_opts.is_some() =>
            {
                adjusted = SocketOptions {
                    interface: self.options.interface.clone(),
                    keepalive: user
                        .tcp_remote_keepalive
                        .map_or(self.options.keepalive, |k| {
                            self.options.keepalive.with_user(&k)
                        }),
                    misc: user.tcp_remote_misc_opts.as_ref().map_or_else(
                        || self.options.misc.clone(),
                        |m| self.options.misc.with_user(m),
                    ),
                };
                &adjusted
            }
            _ => &self.options,
        };
        let racing = Racing {
            resolver: &self.resolver,
            strategy: strategy.query,
            config: &self.config.happy_eyeballs,
            tcp_connect: &tcp_connect,
            options,
            allowed: &|ip| {
                self.allowed(ip)?;
                binds.bind_for(ip, &path).map(|_| ())
            },
            bind: &|ip| binds.bind_for(ip, &path),
            order: &|addresses| Self::order(strategy.pick, addresses),
        };
        let mut connected = happy_eyeballs(&racing, leg.target).await?;
        connected.speed_limit = self.config.tcp_sock_speed_limit;
        Ok(connected)
    }

    /// Where a datagram for `target` goes: resolved, filtered, the first allowed address.
    pub async fn udp_target(
        &self,
        leg: &Leg<'_>,
        binds: &(dyn Binds + Sync),
    ) -> Result<SocketAddr, TaskError> {
        // Paths pick binds for TCP only: the UDP socket is bound without the leg.
        let (target, strategy) = (leg.target, self.strategy(leg));
        let mut addresses = match &target.host {
            Host::Ip(ip) => vec![ip.to_canonical()],
            Host::Domain(domain) => self.resolver.resolve(domain, strategy.query).await?,
        };
        let Some(&first) = addresses.first() else {
            return Err(TaskError::Resolver(format!(
                "{}: no usable address",
                target.host
            )));
        };
        let usable = |ip: IpAddr| {
            self.allowed(ip)
                .and_then(|()| binds.bind_for(ip, &PathChoice::default()).map(|_| ()))
        };
        addresses.retain(|ip| usable(*ip).is_ok());
        Self::order(strategy.pick, &mut addresses);
        match addresses.first() {
            Some(ip) => Ok(SocketAddr::new(*ip, target.port)),
            None => Err(usable(first).err().unwrap_or_else(|| {
                TaskError::Resolver(format!("{}: no usable address", target.host))
            })),
        }
    }

    /// A UDP socket of `target`'s family, bound to the address `binds` gives.
    pub fn udp_bind(
        &self,
        target: SocketAddr,
        binds: &(dyn Binds + Sync),
    ) -> Result<LimitedSocket, TaskError> {
        let bind = binds
            .bind_for(target.ip(), &PathChoice::default())?
            .unwrap_or(super::connect::any_address_for(target).ip());
        let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(UdpSocket::from_std)
            .map_err(|e| TaskError::Internal(format!("udp bind {bind}: {e}")))?;
        sockopt::apply_udp(&socket, target, &self.config.udp_misc_opts);
        Ok(LimitedSocket::new(
            socket,
            self.config.udp_sock_speed_limit.as_ref(),
        ))
    }
}
