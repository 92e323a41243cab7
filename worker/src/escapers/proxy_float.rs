//! `type: proxy_float`: through next-hop proxies published at run time (`escaper NAME
//! publish`), each of its own type (`http`, `https`, `socks5`, `socks5s`), address, login and
//! expiry. A publish is turned once into ready next hops, each the runtime of the fixed type
//! it is (`proxy_http.rs`, `proxy_socks5.rs`) over one address (UDP through the SOCKS5 ones
//! only); a task takes one at random among those not within `expire_guard_duration` of
//! their expiry, or the one its user's `egress_path_id_map` names by `id`, or the peer its
//! user's `egress_path_value_map` gives whole.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use g3proxy_shared::config::escapers::{
    FloatPeer, HttpPeerKeys, NextHopConfig, PeerKind, PeerTlsConfig, ProxyFloatConfig,
    ProxyHttpConfig, ProxySocks5Config, Socks5PeerKeys, parse_peer,
};
use g3proxy_shared::ipc::worker::Published;

use super::proxy_http::ProxyHttpEscaper;
use super::proxy_socks5::ProxySocks5Escaper;
use super::{Connected, Dependencies, EscaperOps, Forward, Latest, Leg, PeerAssociation};
use crate::error::TaskError;
use crate::pick::random_index;

pub struct ProxyFloatEscaper {
    config: ProxyFloatConfig,
    /// The TLS client of the `https` and `socks5s` peers: the config's, or the system's CAs,
    /// read once.
    tls_client: std::sync::OnceLock<Option<g3proxy_shared::config::tls::TlsClientConfig>>,
    peers: RwLock<Latest<Arc<Vec<Arc<Peer>>>>>,
}

/// A published peer, ready to connect through.
struct Peer {
    published: FloatPeer,
    runtime: PeerRuntime,
}

enum PeerRuntime {
    Http(ProxyHttpEscaper),
    Socks5(ProxySocks5Escaper),
}

impl ProxyFloatEscaper {
    pub fn build(config: &ProxyFloatConfig, _deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(ProxyFloatEscaper {
            config: config.clone(),
            tls_client: std::sync::OnceLock::new(),
            peers: RwLock::new(Latest::default()),
        })
    }

    /// The runtime of `peer`: its type's, over its one address, with this escaper's
    /// connection settings.
    fn runtime_of(&self, peer: &FloatPeer) -> Result<PeerRuntime, String> {
        let config = &self.config;
        let mut next_hop = NextHopConfig::single(peer.addr);
        next_hop.proxy_username = peer.username.clone();
        next_hop.proxy_password = peer.password.clone();
        next_hop.peer_negotiation_timeout = config.peer_negotiation_timeout;
        next_hop.tcp_connect = config.tcp_connect();
        next_hop.bind_interface = config.bind_interface.clone();
        next_hop.tcp_keepalive = config.tcp_keepalive;
        next_hop.tcp_misc_opts = config.tcp_misc_opts.clone();
        next_hop.tcp_sock_speed_limit = peer.tcp_sock_speed_limit;
        let tls = matches!(peer.kind, PeerKind::Https | PeerKind::Socks5s).then(|| {
            let tls_client = self.tls_client.get_or_init(|| match &config.tls_client {
                Some(tls) => Some(tls.clone()),
                None => g3proxy_shared::config::tls::TlsClientConfig::defaults().ok(),
            });
            PeerTlsConfig {
                tls_client: tls_client.clone(),
                tls_name: peer.tls_name.clone(),
            }
        });
        // Peers are addresses: nothing to resolve, nothing to route to.
        let (resolvers, escapers) = (HashMap::new(), HashMap::new());
        let deps = Dependencies {
            resolvers: &resolvers,
            escapers: &escapers,
            escape_log: None,
        };
        let built = match peer.kind {
            PeerKind::Http | PeerKind::Https => {
                let http = ProxyHttpConfig {
                    next_hop,
                    http: HttpPeerKeys::default(),
                    tls,
                };
                ProxyHttpEscaper::build(&http, &deps).map(PeerRuntime::Http)
            }
            PeerKind::Socks5 | PeerKind::Socks5s => {
                let socks = ProxySocks5Config {
                    next_hop,
                    socks: Socks5PeerKeys {
                        udp_misc_opts: config.udp_misc_opts,
                        ..Default::default()
                    },
                    tls,
                };
                ProxySocks5Escaper::build(&socks, &deps).map(PeerRuntime::Socks5)
            }
        };
        built.map_err(|e| format!("peer {}: {e}", peer.addr))
    }

    /// The peer for `leg`: the published one with the user's id, or the user's own value
    /// (g3's order), else one at random; never one within `expire_guard_duration` of its
    /// expiry.
    fn pick(&self, leg: &Leg<'_>) -> Result<Arc<Peer>, TaskError> {
        let unreachable =
            |what: String| TaskError::UpstreamUnreachable(std::io::Error::other(what));
        let guard = self.config.expire_guard_duration.0.as_secs();
        let path = leg.path_choice();
        if path.id.is_none()
            && let Some(value) = path.value
        {
            let published = parse_peer(value)
                .map_err(|e| unreachable(format!("the user's egress path value: {e}")))?;
            if !published.is_usable(guard) {
                return Err(unreachable(
                    "the user's egress path peer has expired".into(),
                ));
            }
            let runtime = self.runtime_of(&published).map_err(unreachable)?;
            return Ok(Arc::new(Peer { published, runtime }));
        }
        let peers = self
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .clone();
        let usable: Vec<&Arc<Peer>> = peers
            .iter()
            .filter(|peer| peer.published.is_usable(guard))
            .filter(|peer| {
                path.id
                    .is_none_or(|id| peer.published.id.as_deref() == Some(id))
            })
            .collect();
        match (usable.is_empty(), path.id) {
            (true, None) => Err(unreachable(
                "no published next-hop proxy is usable (none, or all expired)".into(),
            )),
            (true, Some(id)) => Err(unreachable(format!(
                "no usable published next-hop proxy with id {id}"
            ))),
            (false, _) => Ok(usable[random_index(usable.len())].clone()),
        }
    }
}

impl EscaperOps for ProxyFloatEscaper {
    fn publish(&self, published: &Published) -> Result<(), String> {
        let peers = FloatPeer::parse_all(&published.text)?
            .into_iter()
            .map(|peer| {
                Ok(Arc::new(Peer {
                    runtime: self.runtime_of(&peer)?,
                    published: peer,
                }))
            })
            .collect::<Result<Vec<Arc<Peer>>, String>>()?;
        let mut latest = self.peers.write().unwrap_or_else(|e| e.into_inner());
        latest.replace(published.sequence, Arc::new(peers));
        Ok(())
    }

    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        match &self.pick(leg)?.runtime {
            PeerRuntime::Http(peer) => peer.tcp_connect(leg).await,
            PeerRuntime::Socks5(peer) => peer.tcp_connect(leg).await,
        }
    }

    async fn http_forward(&self, leg: &Leg<'_>, tls: bool) -> Option<Result<Forward, TaskError>> {
        let peer = match self.pick(leg) {
            Ok(picked) => picked,
            Err(error) => return Some(Err(error)),
        };
        match &peer.runtime {
            PeerRuntime::Http(peer) => peer.http_forward(leg, tls).await,
            // Over a SOCKS5 tunnel, in origin form: `tcp_connect` picks again.
            PeerRuntime::Socks5(peer) => peer.http_forward(leg, tls).await,
        }
    }

    async fn udp_associate(&self, leg: &Leg<'_>) -> Option<Result<PeerAssociation, TaskError>> {
        let peer = match self.pick(leg) {
            Ok(picked) => picked,
            Err(error) => return Some(Err(error)),
        };
        match &peer.runtime {
            PeerRuntime::Http(_) => Some(Err(TaskError::Unsupported(
                "udp through an http peer".into(),
            ))),
            PeerRuntime::Socks5(peer) => peer.udp_associate(leg).await,
        }
    }
}
