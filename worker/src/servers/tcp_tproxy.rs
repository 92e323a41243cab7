//! `type: tcp_tproxy`: a Linux TPROXY transparent proxy. The supervisor binds the listener
//! with IP_TRANSPARENT, so each accepted connection's local address is the one the client
//! meant to reach: that is the target, reached through the escaper, then the shared relay.
//! A connection made to the listener's own address has no other destination and is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::servers::{ServerCommon, ServerKind as _, TcpTproxyConfig};
use tracing::info;

use super::{BuildContext, ServeConnections};
use crate::auth::Gate;
use crate::conn::ClientConn;
use crate::context::{Context, TaskKind};
use crate::escapers::Escaper;
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

pub struct TcpTproxyServer {
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    /// Its facts group with `auth_by_*`, else open.
    gate: Gate,
    policy: RelayPolicy,
    listen: Option<SocketAddr>,
}

impl TcpTproxyServer {
    /// Whether `local` is our own listening address rather than a redirected destination.
    fn is_own_address(&self, local: SocketAddr) -> bool {
        self.listen.is_some_and(|listen| {
            listen.port() == local.port()
                && (listen.ip() == local.ip() || listen.ip().is_unspecified())
        })
    }
}

impl ServeConnections for TcpTproxyServer {
    type Config = TcpTproxyConfig;

    const KIND: TaskKind = TaskKind::Stream;

    fn build(
        common: &ServerCommon,
        config: &TcpTproxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(TcpTproxyServer {
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.facts_gate(config.user_group.as_deref(), config.facts_auth()),
            policy: super::relay_policy(common),
            listen: common.listen.as_ref().map(|spec| spec.address),
        })
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        mut task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let original = conn.local_addr;
            if self.is_own_address(original) {
                info!(
                    "server {}: task {} client {}: connected to the listener itself, not redirected by TPROXY",
                    task.server_name(),
                    task.id,
                    conn.client_addr
                );
                return;
            }
            let target = HostPort {
                host: Host::Ip(original.ip().to_canonical()),
                port: original.port(),
            };
            let way = super::Way {
                gate: &self.gate,
                escaper: &self.escaper,
                policy: &self.policy,
                context: &self.context,
            };
            way.tunnel(conn, &mut task, &target, None).await;
        }
    }
}
