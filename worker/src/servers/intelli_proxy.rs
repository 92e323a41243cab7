//! `type: intelli_proxy`: HTTP and SOCKS clients on one port. After an optional PROXY
//! header, the first byte decides: 4 or 5 is a SOCKS version, anything else is HTTP; the
//! connection, with that byte still unread, goes to `socks_server` or `http_server`.

use std::future::Future;
use std::sync::Arc;

use g3proxy_proto::Parsed;
use g3proxy_shared::config::servers::{IntelliProxyConfig, ServerCommon};
use tokio::time::Instant;

use super::ports::read_proxy_header;
use super::{BuildContext, ServeConnections, Server};
use crate::conn::{self, ClientConn};
use crate::context::TaskKind;
use crate::task::TaskContext;
use tracing::info;

pub struct IntelliProxyServer {
    config: IntelliProxyConfig,
    http: Arc<Server>,
    socks: Arc<Server>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Socks,
}

/// Which protocol a connection speaks, from its first byte.
fn detect(bytes: &[u8]) -> Result<Parsed<Protocol>, std::convert::Infallible> {
    Ok(match bytes.first() {
        None => Parsed::Partial,
        // Consume nothing: the server it goes to reads the whole message.
        Some(4 | 5) => Parsed::Complete(Protocol::Socks, 0),
        Some(_) => Parsed::Complete(Protocol::Http, 0),
    })
}

impl ServeConnections for IntelliProxyServer {
    type Config = IntelliProxyConfig;

    const KIND: TaskKind = TaskKind::Other;

    fn build(
        _: &ServerCommon,
        config: &IntelliProxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(IntelliProxyServer {
            config: config.clone(),
            http: cx.server(&config.http_server),
            socks: cx.server(&config.socks_server),
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
            if let Some(version) = self.config.proxy_protocol
                && !read_proxy_header(
                    &mut conn,
                    version,
                    self.config.proxy_protocol_read_timeout.0,
                    &task.server,
                )
                .await
            {
                return;
            }
            let deadline = Instant::now() + self.config.protocol_detection_timeout.0;
            let protocol =
                match conn::read_until(&conn.stream, &mut conn.buffer, 1, deadline, detect).await {
                    Ok(protocol) => protocol,
                    Err(_) => {
                        info!(
                            "server {}: client {}: no protocol detected",
                            task.server_name(),
                            conn.client_addr
                        );
                        return;
                    }
                };
            let next = match protocol {
                Protocol::Http => &self.http,
                Protocol::Socks => &self.socks,
            };
            if let Some(serve) = next.serve_handed_over(conn, task) {
                serve.await;
            }
        }
    }
}
