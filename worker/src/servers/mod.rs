//! Servers: accept loops on the sockets the supervisor handed over, and one task per client
//! connection. One file per config `type`.

mod http_proxy;
mod socks_proxy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use g3proxy_shared::config::ServerConfig;
use g3proxy_shared::types::NetworkAcl;
use tokio::net::{TcpListener, TcpStream};

use crate::context::{Context, Phase, ServerCounters};
use crate::relay::RelayLimits;
use crate::{info, warn};

#[derive(Clone)]
pub enum Server {
    HttpProxy(Arc<http_proxy::HttpProxyServer>),
    SocksProxy(Arc<socks_proxy::SocksProxyServer>),
}

impl Server {
    pub fn build(config: &ServerConfig, context: &Context) -> anyhow::Result<Server> {
        let escaper = context
            .escapers
            .get(config.escaper())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "server {}: escaper {} does not exist",
                    config.name(),
                    config.escaper()
                )
            })?;
        let counters = ServerCounters::new(config.name());
        Ok(match config {
            ServerConfig::HttpProxy(c) => Server::HttpProxy(Arc::new(
                http_proxy::HttpProxyServer::new(c.clone(), escaper, counters),
            )),
            ServerConfig::SocksProxy(c) => Server::SocksProxy(Arc::new(
                socks_proxy::SocksProxyServer::new(c.clone(), escaper, counters),
            )),
        })
    }

    pub fn counters(&self) -> &Arc<ServerCounters> {
        match self {
            Server::HttpProxy(s) => &s.counters,
            Server::SocksProxy(s) => &s.counters,
        }
    }

    fn ingress_filter(&self) -> Option<&NetworkAcl> {
        match self {
            Server::HttpProxy(s) => s.config.ingress_network_filter.as_ref(),
            Server::SocksProxy(s) => s.config.ingress_network_filter.as_ref(),
        }
    }

    async fn serve(&self, client: TcpStream, context: &Context) {
        match self {
            Server::HttpProxy(s) => s.serve(client, context).await,
            Server::SocksProxy(s) => s.serve(client, context).await,
        }
    }
}

pub fn relay_limits(
    idle_check_interval: Duration,
    idle_max_count: u32,
    buffer_size: u64,
) -> RelayLimits {
    RelayLimits {
        idle_check_interval: idle_check_interval.max(Duration::from_secs(1)),
        idle_max_count: idle_max_count.max(1),
        buffer_size: (buffer_size as usize).clamp(4 * 1024, 1024 * 1024),
    }
}

/// Accepts until the worker stops serving, then drops this copy of the socket. The supervisor
/// keeps its own, so connections still queued are accepted by the next generation.
pub async fn accept_loop(listener: TcpListener, server: Server, context: Arc<Context>) {
    let mut phase = context.phase.clone();
    let counters = server.counters().clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or memory: back off instead of spinning on the error.
                warn!("server {}: accept failed: {error}", counters.name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        counters.total_conn.fetch_add(1, Ordering::Relaxed);
        if let Some(filter) = server.ingress_filter()
            && !filter.check(peer.ip()).is_permitted()
        {
            info!(
                "server {}: client {peer} refused by ingress_network_filter",
                counters.name
            );
            continue;
        }
        let guard = context.tasks.register(&counters);
        let (server, context) = (server.clone(), context.clone());
        tokio::spawn(async move {
            server.serve(client, &context).await;
            drop(guard);
        });
    }
}
