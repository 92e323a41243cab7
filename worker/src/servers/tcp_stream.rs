//! `type: tcp_stream`: each connection goes to one of the configured upstreams, picked by
//! `upstream_pick_policy`, over TLS when `tls_client` says so; an upstream that fails is
//! followed by the others in turn (each failure logged with its reason), then the bytes flow
//! through the shared relay. `tls_stream` is the same behind a TLS handshake
//! ([`StreamRelay`] is their common part).

use std::future::Future;
use std::sync::Arc;

use g3proxy_proto::HostPort;
use g3proxy_shared::config::servers::{ServerCommon, StreamConfig, TcpStreamConfig};
use g3proxy_shared::config::tls::TlsClientConfig;
use tracing::info;

use super::{BuildContext, ServeConnections};
use crate::auth::{Gate, RequestHold};
use crate::conn::ClientConn;
use crate::context::{Context, TaskKind};
use crate::error::TaskError;
use crate::escapers::{Connected, Escaper};
use crate::pick::Picker;
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

/// Connects a client to an upstream of the list and relays between them.
pub struct StreamRelay {
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    /// Its facts group with `auth_by_client_ip`, else open.
    gate: Gate,
    policy: RelayPolicy,
    upstreams: Picker<HostPort>,
    tls_client: Option<TlsClientConfig>,
    tls_name: Option<String>,
}

impl StreamRelay {
    pub fn build(common: &ServerCommon, config: &StreamConfig, cx: &BuildContext) -> StreamRelay {
        let upstreams = config
            .upstream
            .iter()
            // The loader refuses an entry without a port.
            .map(|entry| (entry.addr.with_default_port(0), entry.weight))
            .collect();
        StreamRelay {
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.facts_gate(config.user_group.as_deref(), config.facts_auth()),
            policy: super::relay_policy(common),
            upstreams: Picker::new(upstreams, config.upstream_pick_policy),
            tls_client: config.upstream_tls().cloned(),
            tls_name: config.upstream_tls_name.clone(),
        }
    }

    /// The first upstream that answers, in the policy's order, and the user's place held for
    /// the connection (one request, whatever the upstreams tried); `None` when none did (each
    /// failure is logged).
    async fn connect(&self, task: &mut TaskContext) -> Option<(RequestHold, Connected)> {
        let admitted = self.gate.admit_connection(task, None).await;
        let hold = match admitted.and_then(|()| self.gate.hold_request(task, None)) {
            Ok(hold) => hold,
            Err(error) => {
                error.log(task);
                return None;
            }
        };
        let mut last_error = None;
        // g3's key: the client's address and the one it connected to.
        let key = format!("{}-{}", task.client_addr.ip(), task.local_addr.ip());
        for target in self.upstreams.failover_order(key.as_bytes()) {
            let permit = self.gate.permit_within(task, None, target);
            let attempt = match (permit, &self.tls_client) {
                (Err(error), _) => Err(error),
                (Ok(permit), Some(tls)) => {
                    Box::pin(
                        self.escaper
                            .tls_connect(task, &permit, tls, self.tls_name.as_deref()),
                    )
                    .await
                }
                (Ok(permit), None) => Box::pin(self.escaper.tcp_connect(task, &permit)).await,
            };
            match attempt {
                Ok(connected) => return Some((hold, connected)),
                Err(error) => {
                    info!(
                        "server {}: task {} upstream {target}: {error}",
                        task.server_name(),
                        task.id
                    );
                    last_error = Some(error);
                }
            }
        }
        if let Some(error) = last_error {
            let all = TaskError::UpstreamUnreachable(std::io::Error::other(format!(
                "every upstream failed, the last with: {error}"
            )));
            all.log(task);
        }
        None
    }

    pub async fn serve(&self, conn: ClientConn, mut task: TaskContext) {
        // The hold lives until the relay ends.
        let Some((_hold, upstream)) = self.connect(&mut task).await else {
            return;
        };
        super::relay_to_upstream(conn, upstream, &mut task, &self.policy, &self.context).await;
    }
}

pub struct TcpStreamServer(StreamRelay);

impl ServeConnections for TcpStreamServer {
    type Config = TcpStreamConfig;

    const KIND: TaskKind = TaskKind::Stream;

    fn build(
        common: &ServerCommon,
        config: &TcpStreamConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(TcpStreamServer(StreamRelay::build(common, &config.0, cx)))
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move { self.0.serve(conn, task).await }
    }
}
