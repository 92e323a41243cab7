//! `type: http_proxy`: HTTP/1.x forward proxy. Per client connection (TLS first when
//! `tls_server` makes it an HTTPS proxy): read a request head, then either tunnel (CONNECT,
//! through the shared relay) or forward the request and its response back, on the connection
//! the escaper gives: to the origin (over TLS for https forward, `GET https://…` sent in
//! plain text) or to a next-hop proxy in absolute form; both connections kept alive when
//! allowed.
//!
//! Draining: the response in flight is sent with `Connection: close` and the connection ends;
//! an idle keep-alive connection is served one more request (with `close`) rather than cut,
//! so no client's request is lost to a reload.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use g3proxy_proto::HostPort;
use g3proxy_proto::http1::{RequestHead, RequestTarget};
use g3proxy_shared::config::servers::{HttpProxyConfig, ServerCommon};
use g3proxy_shared::config::tls::{OptionalTlsClient, TlsClientConfig, TlsServerConfig};
use g3proxy_shared::types::acl::ProxyRequestType;
use tokio::time::Instant;

use super::{BuildContext, ServeConnections};
use crate::auth::{Gate, Permit};
use crate::conn::{self, ClientConn, write_all_within};
use crate::context::{Context, TaskKind};
use crate::error::{Forbidden, TaskError};
use crate::escapers::Escaper;
use crate::http::{self, Challenge, HttpClient, SessionLogin, UpstreamConn, UpstreamSource};
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

pub struct HttpProxyServer {
    config: HttpProxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    gate: Gate,
    policy: RelayPolicy,
    tls_server: Option<TlsServerConfig>,
    /// How https forward speaks TLS to origins.
    tls_client: HttpsForward,
}

/// The TLS client of https forward: configured, off (`tls_client: false`), or by default the
/// system's CA certificates, read on the first https forward rather than by every worker at
/// start (they cost a megabyte or two that most proxies never use).
enum HttpsForward {
    Configured(TlsClientConfig),
    SystemRoots(OnceLock<Result<TlsClientConfig, String>>),
    Off,
}

impl HttpsForward {
    fn config(&self) -> Result<&TlsClientConfig, TaskError> {
        match self {
            HttpsForward::Configured(config) => Ok(config),
            HttpsForward::SystemRoots(once) => once
                .get_or_init(TlsClientConfig::defaults)
                .as_ref()
                .map_err(|e| TaskError::Internal(format!("tls client: {e}"))),
            HttpsForward::Off => Err(TaskError::Policy(Forbidden::HttpsForward)),
        }
    }
}

/// The upstream connection kept for the client's next request to the same origin.
struct Kept {
    target: HostPort,
    tls: bool,
    /// Whose it is: made with one user's settings (its site's TLS client certificate,
    /// socket options), it carries no other user's request.
    owner: Owner,
    conn: UpstreamConn,
    since: Instant,
}

/// The user, explicit site and path number a kept connection was made for.
type Owner = (Option<Arc<str>>, Option<Arc<str>>, Option<usize>);

fn owner(permit: &Permit<'_>) -> Owner {
    (
        permit.user().map(|user| user.name.clone()),
        permit.site().map(|site| site.id.clone()),
        permit.egress_path().map(|(_, id)| id),
    )
}

enum Next {
    KeepAlive,
    Close,
}

impl ServeConnections for HttpProxyServer {
    type Config = HttpProxyConfig;

    const KIND: TaskKind = TaskKind::Http;

    fn build(
        common: &ServerCommon,
        config: &HttpProxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        let tls_client = match &config.tls_client {
            None => HttpsForward::SystemRoots(OnceLock::new()),
            Some(OptionalTlsClient(Some(configured))) => {
                HttpsForward::Configured(configured.clone())
            }
            Some(OptionalTlsClient(None)) => HttpsForward::Off,
        };
        Ok(HttpProxyServer {
            config: config.clone(),
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.gate(config.user_group.as_deref()),
            policy: super::relay_policy(common),
            tls_server: config.tls_server.clone(),
            tls_client,
        })
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        mut conn: ClientConn,
        mut task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Some(tls) = &self.tls_server
                && !conn.stream.is_tls()
            {
                let Some(secured) = conn::terminate_tls(conn, tls, &task).await else {
                    return;
                };
                conn = secured;
            }
            let mut session = Session {
                server: &self,
                task: &mut task,
                client: HttpClient::new(conn.stream, conn.buffer, &self.context),
                kept: None,
                login: SessionLogin::default(),
            };
            if let Err(error) = session.run().await {
                error.log(session.task);
                let challenge = Challenge::Proxy(&self.config.auth_realm);
                session
                    .client
                    .reply_error(&error, self.idle_timeout(), challenge)
                    .await;
            }
            session.client.close().await;
        }
    }
}

impl HttpProxyServer {
    fn idle_timeout(&self) -> Duration {
        self.policy.idle_timeout()
    }

    fn forward_env(&self) -> http::ForwardEnv<'_> {
        http::ForwardEnv {
            session: &self.config.session,
            policy: &self.policy,
            context: &self.context,
        }
    }
}

struct Session<'a> {
    server: &'a HttpProxyServer,
    task: &'a mut TaskContext,
    client: HttpClient<'a>,
    kept: Option<Kept>,
    login: SessionLogin,
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), TaskError> {
        loop {
            let read = self
                .client
                .read_head(&self.server.config.session, &self.server.context);
            let Some(head) = read.await? else {
                return Ok(());
            };
            let target = head
                .proxy_target()
                .map_err(|e| TaskError::Client(e.to_string()))?;
            let login =
                self.login
                    .check(&self.server.gate, self.task, &head, "proxy-authorization");
            login.await?;
            self.task.egress_path = self.egress_path(&head)?;
            let next = match target {
                RequestTarget::Tunnel(target) => {
                    // A tunnel may idle for hours: its request head's memory goes now.
                    drop(head);
                    self.tunnel(target).await?
                }
                RequestTarget::Forward {
                    upstream,
                    path,
                    tls,
                } => {
                    // Boxed in a statement of its own: a temporary in the awaited expression
                    // would keep the unboxed future's space in this one.
                    let forward = Box::pin(self.forward(&head, upstream, &path, tls));
                    forward.await?
                }
            };
            if matches!(next, Next::Close) {
                return Ok(());
            }
        }
    }

    /// The path the request picks for the server's escaper with `egress_path_selection_header`
    /// (a number; anything else is a bad request, as in g3).
    fn egress_path(&self, head: &RequestHead) -> Result<Option<(Arc<str>, usize)>, TaskError> {
        let Some(name) = &self.server.config.egress_path_selection_header else {
            return Ok(None);
        };
        let Some(value) = head.header(name) else {
            return Ok(None);
        };
        let id = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| TaskError::Client(format!("{name}: not a path number")))?;
        Ok(Some((self.server.escaper.name.clone(), id)))
    }

    async fn tunnel(&mut self, target: HostPort) -> Result<Next, TaskError> {
        self.task.set_kind(TaskKind::Connect);
        let permit =
            self.server
                .gate
                .permit(self.task, Some(ProxyRequestType::HttpConnect), &target)?;
        let connect = Box::pin(self.server.escaper.tcp_connect(self.task, &permit));
        let upstream = connect.await?;
        self.client.replied = true;
        write_all_within(
            &self.client.stream,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            self.server.idle_timeout(),
        )
        .await
        .map_err(TaskError::ClientIo)?;
        let early = std::mem::take(&mut self.client.buffer);
        let relayed = Box::pin(super::tunnel(
            &self.client.stream,
            early,
            &upstream.stream,
            self.task,
            &self.server.policy,
            &self.server.context,
        ));
        relayed.await?;
        Ok(Next::Close)
    }

    async fn forward(
        &mut self,
        head: &RequestHead,
        target: HostPort,
        path: &str,
        tls: bool,
    ) -> Result<Next, TaskError> {
        let server = self.server;
        let request_type = match tls {
            true => ProxyRequestType::HttpsForward,
            false => ProxyRequestType::HttpForward,
        };
        let permit = server.gate.permit(self.task, Some(request_type), &target)?;
        if let Some(user) = &self.task.user {
            user.check_user_agent(head.headers("user-agent"))
                .map_err(TaskError::Policy)?;
        }
        let request = http::Request {
            head,
            path,
            upstream: &target,
            tls,
            host: None,
            extra_headers: b"",
            consumed_header: server.config.egress_path_selection_header.as_deref(),
            rsp_header_timeout: permit.site().and_then(|site| site.rsp_header_timeout),
        };
        let mut source = KeptOrNew {
            server,
            kept: &mut self.kept,
            permit,
            tls,
        };
        let exchanged = http::forward(
            &mut self.client,
            self.task,
            &request,
            &mut source,
            server.forward_env(),
        )
        .await?;
        let owner = owner(&source.permit);
        if let Some(conn) = exchanged.upstream {
            self.kept = Some(Kept {
                target: target.clone(),
                tls,
                owner,
                conn,
                since: Instant::now(),
            });
        }
        Ok(if exchanged.keep_client {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }
}

/// The session's kept connection when it goes to the same origin the same way and is
/// still open, else a new one through the escaper.
struct KeptOrNew<'a> {
    server: &'a HttpProxyServer,
    kept: &'a mut Option<Kept>,
    permit: Permit<'a>,
    tls: bool,
}

impl UpstreamSource for KeptOrNew<'_> {
    async fn connection(
        &mut self,
        task: &mut TaskContext,
        fresh: bool,
    ) -> Result<(UpstreamConn, bool), TaskError> {
        // A user's `http_upstream_keepalive` may turn reuse off or shorten it.
        let user_keepalive = self.permit.user_upstream_keepalive();
        if let Some(kept) = self.kept.take()
            && !fresh
            && kept.target == *self.permit.target()
            && kept.tls == self.tls
            && kept.owner == owner(&self.permit)
            && user_keepalive.is_none_or(|k| k.permits(kept.since.elapsed()))
            && kept.conn.is_reusable(kept.since)
        {
            return Ok((kept.conn, true));
        }
        let tls_client = &self.server.tls_client;
        // The user's explicit site may have a TLS client of its own (where the server does
        // https forward at all).
        let site_tls = self.permit.site().and_then(|site| site.tls_client.as_ref());
        let forward = self
            .server
            .escaper
            .http_forward(task, &self.permit, self.tls, None, || match site_tls {
                Some(site_tls) => tls_client.config().map(|_| site_tls),
                None => tls_client.config(),
            })
            .await?;
        Ok((UpstreamConn::from_forward(forward, task), false))
    }
}
