//! The port entries: `plain_tcp_port`, `plain_tls_port` and `native_tls_port` (rustls here).
//! Each reads an optional PROXY protocol header first (the client address it reports replaces
//! the socket's for everything after, the next server's ingress filter included), terminates
//! TLS for the TLS ports, and hands the connection to the server it names.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use g3proxy_proto::proxy_protocol::{self, Version};
use g3proxy_shared::config::servers::{
    PlainTcpPortConfig, PlainTlsPortConfig, ProxyProtocol, ServerCommon,
};
use g3proxy_shared::config::tls::TlsServerConfig;
use g3proxy_shared::types::HumanDuration;
use tokio::time::Instant;

use super::{BuildContext, ServeConnections, Server};
use crate::conn::{self, ClientConn, ReadError};
use crate::context::{ServerCounters, TaskKind};
use crate::task::TaskContext;
use tracing::info;

/// Reads the PROXY header a port expects; the connection is dropped without one.
pub async fn read_proxy_header(
    conn: &mut ClientConn,
    version: ProxyProtocol,
    timeout: std::time::Duration,
    server: &ServerCounters,
) -> bool {
    let version = match version {
        ProxyProtocol::V1 => Version::V1,
        ProxyProtocol::V2 => Version::V2,
    };
    let max = match version {
        Version::V1 => proxy_protocol::V1_MAX_LEN,
        Version::V2 => proxy_protocol::V2_MAX_LEN,
    };
    let read = conn::read_until(
        &conn.stream,
        &mut conn.buffer,
        max,
        Instant::now() + timeout,
        |bytes| proxy_protocol::parse(version, bytes),
    )
    .await;
    match read {
        Ok(header) => {
            if let Some((client, local)) = header.addresses {
                conn.client_addr = client;
                conn.local_addr = local;
            }
            true
        }
        Err(error) => {
            let why = match error {
                ReadError::Invalid(e) => e.to_string(),
                ReadError::TooLarge => "header too long".into(),
                ReadError::Closed { .. } => "closed before the header".into(),
                ReadError::TimedOut => {
                    server.listen_timeout.fetch_add(1, Ordering::Relaxed);
                    "no header in time".into()
                }
                ReadError::Io(e) => e.to_string(),
            };
            info!(
                "server {}: client {}: PROXY protocol: {why}",
                server.name, conn.client_addr
            );
            false
        }
    }
}

struct Port {
    next: Arc<Server>,
    proxy_protocol: Option<ProxyProtocol>,
    proxy_protocol_read_timeout: std::time::Duration,
}

impl Port {
    fn new(
        cx: &BuildContext,
        server: &str,
        proxy_protocol: Option<ProxyProtocol>,
        read_timeout: HumanDuration,
    ) -> Port {
        Port {
            next: cx.server(server),
            proxy_protocol,
            proxy_protocol_read_timeout: read_timeout.0,
        }
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve<'a>(
        &'a self,
        mut conn: ClientConn,
        task: TaskContext,
        tls: Option<&'a TlsServerConfig>,
    ) -> impl Future<Output = ()> + Send + 'a {
        async move {
            if let Some(version) = self.proxy_protocol
                && !read_proxy_header(
                    &mut conn,
                    version,
                    self.proxy_protocol_read_timeout,
                    &task.server,
                )
                .await
            {
                return;
            }
            if let Some(tls) = tls {
                let Some(secured) = conn::terminate_tls(conn, tls, &task).await else {
                    return;
                };
                conn = secured;
            }
            if let Some(serve) = self.next.serve_handed_over(conn, task) {
                serve.await;
            }
        }
    }
}

pub struct PlainTcpPort(Port);

impl ServeConnections for PlainTcpPort {
    type Config = PlainTcpPortConfig;

    const KIND: TaskKind = TaskKind::Other;

    fn build(
        _: &ServerCommon,
        config: &PlainTcpPortConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(PlainTcpPort(Port::new(
            cx,
            &config.server,
            config.proxy_protocol,
            config.proxy_protocol_read_timeout,
        )))
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move { self.0.serve(conn, task, None).await }
    }
}

pub struct TlsPort {
    port: Port,
    tls: TlsServerConfig,
}

impl ServeConnections for TlsPort {
    type Config = PlainTlsPortConfig;

    const KIND: TaskKind = TaskKind::Other;

    fn build(
        _: &ServerCommon,
        config: &PlainTlsPortConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(TlsPort {
            port: Port::new(
                cx,
                &config.server,
                config.proxy_protocol,
                config.proxy_protocol_read_timeout,
            ),
            tls: config.tls_server.clone(),
        })
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move { self.port.serve(conn, task, Some(&self.tls)).await }
    }
}
