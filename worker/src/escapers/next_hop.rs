//! The part every `proxy_*` escaper shares: a connection to one of its next-hop proxies,
//! picked by `proxy_addr_pick_policy`, a name resolved and its addresses raced as for a
//! target (Happy Eyeballs), from `bind_ipv4` / `bind_ipv6`, with the socket options of the
//! config, and TLS on top for the `s` variants. What is said over it (`CONNECT`, SOCKS5) is
//! each type's own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::HostPort;
use g3proxy_shared::config::escapers::{NextHopConfig, PeerTlsConfig};
use g3proxy_shared::config::tls::TlsClientConfig;
use rustls::pki_types::ServerName;

use super::connect::{Racing, SocketOptions, happy_eyeballs, tls_over};
use super::{Connected, Dependencies, Leg};
use crate::error::TaskError;
use crate::pick::Picker;
use crate::resolvers::Resolver;

pub struct NextHop {
    config: NextHopConfig,
    peers: Picker<HostPort>,
    resolver: Arc<Resolver>,
    options: SocketOptions,
    tls: Option<PeerTls>,
}

struct PeerTls {
    config: TlsClientConfig,
    /// The name every next hop's certificate is checked against; else each one's host.
    name: Option<ServerName<'static>>,
}

impl NextHop {
    pub fn build(
        config: &NextHopConfig,
        tls: Option<&PeerTlsConfig>,
        default_port: u16,
        deps: &Dependencies,
    ) -> anyhow::Result<NextHop> {
        let peers = config
            .proxy_addr
            .iter()
            .map(|entry| (entry.addr.with_default_port(default_port), entry.weight))
            .collect();
        let resolver = match &config.resolver {
            Some(name) => deps.resolver(name),
            // The loader refuses a named next hop without a resolver: addresses need none.
            None => Resolver::named(&HashMap::new(), ""),
        };
        let tls = match tls {
            None => None,
            Some(keys) => Some(PeerTls {
                config: match &keys.tls_client {
                    Some(config) => config.clone(),
                    None => TlsClientConfig::defaults().map_err(|e| anyhow::anyhow!(e))?,
                },
                name: match &keys.tls_name {
                    None => None,
                    Some(name) => Some(
                        ServerName::try_from(name.clone())
                            .map_err(|_| anyhow::anyhow!("invalid tls_name {name:?}"))?,
                    ),
                },
            }),
        };
        Ok(NextHop {
            config: config.clone(),
            peers: Picker::new(peers, config.proxy_addr_pick_policy),
            resolver,
            options: SocketOptions {
                interface: config.bind_interface.clone(),
                keepalive: config.tcp_keepalive,
                misc: config.tcp_misc_opts.clone(),
            },
            tls,
        })
    }

    pub fn negotiation_timeout(&self) -> Duration {
        self.config.peer_negotiation_timeout.0
    }

    fn allowed(&self, ip: IpAddr) -> Result<(), TaskError> {
        match self.config.no_ipv4 && ip.is_ipv4() || self.config.no_ipv6 && ip.is_ipv6() {
            true => Err(TaskError::Resolver(format!(
                "next hop {ip}: its address family is turned off (no_ipv4 / no_ipv6)"
            ))),
            false => Ok(()),
        }
    }

    fn bind(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.config.bind_ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.config.bind_ipv6.map(IpAddr::V6),
        }
    }

    /// A connection to one next hop (picked for `leg` when the policy hashes), TLS done for
    /// the `s` variants, carrying the escaper's speed limit.
    pub async fn connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        let peer = self.peers.pick(&leg.hash_key());
        let racing = Racing {
            resolver: &self.resolver,
            strategy: self.config.resolve_strategy.query,
            config: &self.config.happy_eyeballs,
            tcp_connect: &self.config.tcp_connect,
            options: &self.options,
            allowed: &|ip| self.allowed(ip),
            bind: &|ip| Ok(self.bind(ip)),
            order: &|_| {},
        };
        let mut connected = happy_eyeballs(&racing, peer).await?;
        connected.speed_limit = self.config.tcp_sock_speed_limit;
        if let Some(version) = self.config.use_proxy_protocol {
            super::send_proxy_header(&connected, version, leg.client, leg.server)
                .await
                .map_err(TaskError::UpstreamIo)?;
            connected.names_client = true;
        }
        let Some(tls) = &self.tls else {
            return Ok(connected);
        };
        tls_over(connected, &tls.config, tls.name.clone(), &peer.host).await
    }
}
