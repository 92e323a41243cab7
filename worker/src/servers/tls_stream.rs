//! `type: tls_stream`: TLS on the client side (`tls_server`, mTLS with `enable_client_auth`),
//! then a `tcp_stream` to the upstreams.

use std::future::Future;
use std::sync::Arc;

use g3proxy_shared::config::servers::{ServerCommon, TlsStreamConfig};
use g3proxy_shared::config::tls::TlsServerConfig;

use super::tcp_stream::StreamRelay;
use super::{BuildContext, ServeConnections};
use crate::conn::{self, ClientConn};
use crate::context::TaskKind;
use crate::task::TaskContext;

pub struct TlsStreamServer {
    tls: TlsServerConfig,
    relay: StreamRelay,
}

impl ServeConnections for TlsStreamServer {
    type Config = TlsStreamConfig;

    const KIND: TaskKind = TaskKind::Stream;

    fn build(
        common: &ServerCommon,
        config: &TlsStreamConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        let tls = config
            .tls_server()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("tls_stream needs tls_server"))?;
        Ok(TlsStreamServer {
            tls,
            relay: StreamRelay::build(common, &config.0, cx),
        })
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        mut conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // A plain_tls_port in front has done the handshake already.
            if !conn.stream.is_tls() {
                let Some(secured) = conn::terminate_tls(conn, &self.tls, &task).await else {
                    return;
                };
                conn = secured;
            }
            self.relay.serve(conn, task).await
        }
    }
}
