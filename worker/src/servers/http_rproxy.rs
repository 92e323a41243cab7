//! `type: http_rproxy`: an HTTP/1.x reverse proxy. The request's `Host` picks a site
//! (`hosts`: exact host, nearest parent domain, default); the request goes to the site's
//! upstream (over TLS with the site's `tls_client`) on a connection from the site's pool,
//! with the client's `Host`, an `X-Forwarded-For` (or RFC 7239 `Forwarded`) and a `Via`
//! naming this proxy; a request whose `Via` already names it is a loop (508). With
//! `enable_tls_server`, the ClientHello's server name picks the site's certificate before
//! the handshake. With `no_early_error_reply`, a request that is not for a site, or not a
//! request, gets a close and no answer (a port scanner learns nothing).
//!
//! With a `user_group`, every request logs in with Basic credentials in `Authorization`
//! (401 with `WWW-Authenticate` and `auth_realm` otherwise), which are not passed upstream.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use g3proxy_proto::http1::{RequestHead, RequestTarget};
use g3proxy_proto::tls_hello;
use g3proxy_proto::{Host, HostPort, Parsed};
use g3proxy_shared::config::servers::{ForwardedFor, HttpRproxyConfig, RproxyHost, ServerCommon};
use g3proxy_shared::config::tls::{TlsClientConfig, TlsServerConfig};
use g3proxy_shared::types::acl::ProxyRequestType;
use tokio::time::Instant;
use tracing::info;

use super::{BuildContext, ServeConnections};
use crate::auth::{Gate, Permit};
use crate::conn::{self, ClientConn};
use crate::context::{Context, TaskKind};
use crate::error::TaskError;
use crate::escapers::Escaper;
use crate::host_match::HostMatcher;
use crate::http::{
    self, Challenge, HttpClient, SessionLogin, UpstreamConn, UpstreamPool, UpstreamSource,
};
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

/// The most a ClientHello may take before the site is known.
const CLIENT_HELLO_MAX: usize = 64 << 10;

pub struct HttpRproxyServer {
    config: HttpRproxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    gate: Gate,
    policy: RelayPolicy,
    sites: HostMatcher<Arc<Site>>,
}

/// One entry of `hosts`, ready to serve.
struct Site {
    upstream: HostPort,
    tls_client: Option<TlsClientConfig>,
    tls_name: Option<String>,
    /// Its certificate: its own, else the global one.
    tls_server: Option<TlsServerConfig>,
    pool: UpstreamPool,
}

impl ServeConnections for HttpRproxyServer {
    type Config = HttpRproxyConfig;

    const KIND: TaskKind = TaskKind::Http;

    fn build(
        common: &ServerCommon,
        config: &HttpRproxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        let site = |host: &RproxyHost| {
            Arc::new(Site {
                upstream: host.upstream.with_default_port(80),
                tls_client: host.upstream_tls().cloned(),
                tls_name: host.tls_name.clone(),
                tls_server: host
                    .tls_server
                    .clone()
                    .or_else(|| config.global_tls_server.clone()),
                pool: UpstreamPool::new(config.http_forward_upstream_keepalive),
            })
        };
        Ok(HttpRproxyServer {
            config: config.clone(),
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.gate(config.user_group.as_deref()),
            policy: super::relay_policy(common),
            sites: HostMatcher::build(&config.hosts, site),
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
            if self.config.enable_tls_server && !conn.stream.is_tls() {
                let Some(secured) = self.accept_tls(conn, &task).await else {
                    return;
                };
                conn = secured;
                task.client_tls = conn.tls.clone();
            }
            let added = self.forwarded_for(&task);
            let mut session = Session {
                server: &self,
                task: &mut task,
                client: HttpClient::new(conn.stream, conn.buffer, &self.context),
                accepted: false,
                forwarded_len: added.len(),
                added,
                login: SessionLogin::default(),
                consumed_authorization: false,
            };
            if let Err(error) = session.run().await {
                error.log(session.task);
                if session.accepted || !self.config.no_early_error_reply {
                    let timeout = self.policy.idle_timeout();
                    let challenge = Challenge::Origin(&self.config.auth_realm);
                    session.client.reply_error(&error, timeout, challenge).await;
                }
            }
            session.client.close().await;
        }
    }
}

impl HttpRproxyServer {
    /// TLS with the certificate of the site the ClientHello names (or the default site), else
    /// the global one; `None` (logged) when there is none or the handshake fails.
    async fn accept_tls(&self, mut conn: ClientConn, task: &TaskContext) -> Option<ClientConn> {
        let deadline = Instant::now() + self.config.client_hello_recv_timeout.0;
        // The hello stays in the buffer: the handshake reads it from there.
        let read = conn::read_until(
            &conn.stream,
            &mut conn.buffer,
            CLIENT_HELLO_MAX,
            deadline,
            |bytes| {
                Ok::<_, tls_hello::HelloError>(match tls_hello::parse(bytes, CLIENT_HELLO_MAX)? {
                    Parsed::Partial => Parsed::Partial,
                    Parsed::Complete(hello, _) => Parsed::Complete(hello.server_name, 0),
                })
            },
        );
        let why = match read.await {
            Ok(name) => {
                let site = match &name {
                    Some(name) => self.sites.get(name),
                    None => self.sites.get(""),
                };
                let tls = match site {
                    Some(site) => site.tls_server.as_ref(),
                    None => self.config.global_tls_server.as_ref(),
                };
                match tls {
                    Some(tls) => return conn::terminate_tls(conn, tls, task).await,
                    None => format!(
                        "no certificate for server name {}",
                        name.as_deref().unwrap_or("(none)")
                    ),
                }
            }
            Err(conn::ReadError::Invalid(e)) => e.to_string(),
            Err(conn::ReadError::TooLarge) => "ClientHello too large".into(),
            Err(conn::ReadError::Closed { .. }) => "closed before a whole ClientHello".into(),
            Err(conn::ReadError::TimedOut) => "no whole ClientHello in time".into(),
            Err(conn::ReadError::Io(e)) => e.to_string(),
        };
        info!(
            "server {}: task {} client {}: tls: {why}",
            task.server_name(),
            task.id,
            task.client_addr
        );
        None
    }

    /// The header line that tells upstreams who the client is (none with
    /// `append_forwarded_for: none`).
    fn forwarded_for(&self, task: &TaskContext) -> Vec<u8> {
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let client = canonical(task.client_addr);
        let line = match self.config.append_forwarded_for {
            ForwardedFor::Classic => format!("X-Forwarded-For: {}\r\n", client.ip()),
            ForwardedFor::Standard => format!(
                "Forwarded: for=\"{client}\";by=\"{}\"\r\n",
                canonical(task.local_addr)
            ),
            ForwardedFor::None => String::new(),
        };
        line.into_bytes()
    }

    fn forward_env(&self) -> http::ForwardEnv<'_> {
        http::ForwardEnv {
            session: &self.config.session,
            policy: &self.policy,
            context: &self.context,
        }
    }

    /// The name this proxy goes by in `Via`: `server_id`, or the host the client asked for.
    fn pseudonym<'a>(&'a self, host: &'a str) -> &'a str {
        self.config.server_id.as_deref().unwrap_or(host)
    }
}

struct Session<'a> {
    server: &'a HttpRproxyServer,
    task: &'a mut TaskContext,
    client: HttpClient<'a>,
    /// The current request is for a site: errors are answered even with
    /// `no_early_error_reply`.
    accepted: bool,
    /// The lines added to every request: the client's `X-Forwarded-For` (or `Forwarded`),
    /// the first `forwarded_len` bytes, built once; then this request's `Via`.
    added: Vec<u8>,
    forwarded_len: usize,
    login: SessionLogin,
    /// The current request's `Authorization` held our users' credentials.
    consumed_authorization: bool,
}

/// Where a request goes, read from its head.
struct Routed<'h> {
    site: Arc<Site>,
    /// Borrowed from the head in origin form (every request but a proxy-style one).
    path: Cow<'h, str>,
    /// The `Host` header as the client sent it.
    host_header: &'h [u8],
    /// The host part of it, as sites match it.
    host: Cow<'h, str>,
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), TaskError> {
        let server = self.server;
        loop {
            self.accepted = false;
            let read = self
                .client
                .read_head(&server.config.session, &server.context);
            let Some(head) = read.await? else {
                return Ok(());
            };
            let routed = self.route(&head)?;
            self.accepted = true;
            let login = self
                .login
                .check(&server.gate, self.task, &head, "authorization");
            // Basic credentials were for us; any other scheme is the site's business.
            self.consumed_authorization = login.await?;
            // Not boxed (http_proxy boxes its forward so that its tunnels stay small): a
            // box of this future is a 2 KiB allocation per request, and every allocation that
            // large makes glibc consolidate its free lists (7% of requests/s). A reverse
            // proxy's connections pay the 2 KiB instead, idle or not.
            if !self.forward(&head, &routed).await? {
                return Ok(());
            }
        }
    }

    /// The site a request is for, and what goes upstream of its target.
    fn route<'h>(&self, head: &'h RequestHead) -> Result<Routed<'h>, TaskError> {
        if head.is_connect() {
            return Err(TaskError::Client(
                "CONNECT is not served by a reverse proxy".into(),
            ));
        }
        let host_header = head
            .header("host")
            .ok_or_else(|| TaskError::Client("no Host header".into()))?;
        let authority = std::str::from_utf8(host_header)
            .map(str::trim)
            .map_err(|_| TaskError::Client("Host is not text".into()))?;
        let host = HostPort::parse_authority(authority, Some(0))
            .ok_or_else(|| TaskError::Client(format!("Host {authority:?} is no host")))?
            .host;
        let path = if head.target.starts_with('/') {
            // Origin form, passed on as it came.
            Cow::Borrowed(head.target.as_str())
        } else if head.target == "*" && head.method.eq_ignore_ascii_case("OPTIONS") {
            Cow::Borrowed(head.target.as_str())
        } else {
            // Absolute form (an http or https URI without credentials), which must name the
            // same host as `Host`: RFC 9112 3.2.2 lets us prefer the URI, but two answers to
            // "which site" are one too many.
            match head.proxy_target() {
                Ok(RequestTarget::Forward { upstream, path, .. }) if upstream.host == host => {
                    Cow::Owned(path)
                }
                Ok(RequestTarget::Forward { .. }) => {
                    return Err(TaskError::Client(
                        "the request-target and Host name different hosts".into(),
                    ));
                }
                _ => {
                    return Err(TaskError::Client(format!(
                        "request-target {:?} is no path and no http URI",
                        head.target
                    )));
                }
            }
        };
        // The text sites match: an IPv4 address as the header has it (a parsed one is in its
        // one form already), a name lower-cased, an IPv6 address in brackets.
        let host: Cow<'h, str> = match host {
            Host::Ip(IpAddr::V4(_)) => Cow::Borrowed(
                authority
                    .rsplit_once(':')
                    .map_or(authority, |(host, _)| host),
            ),
            Host::Domain(name) => Cow::Owned(name),
            ip @ Host::Ip(IpAddr::V6(_)) => Cow::Owned(ip.to_string()),
        };
        let site = self
            .server
            .sites
            .get(&host)
            .cloned()
            .ok_or_else(|| TaskError::Client(format!("no site for host {host}")))?;
        let pseudonym = self.server.pseudonym(&host);
        let looped = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("via"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|hop| {
                hop.split(|b| b.is_ascii_whitespace())
                    .filter(|word| !word.is_empty())
                    .nth(1)
                    == Some(pseudonym.as_bytes())
            });
        if looped {
            return Err(TaskError::LoopDetected(pseudonym.to_string()));
        }
        Ok(Routed {
            site,
            path,
            host_header,
            host,
        })
    }

    /// Forwards one request; whether the client connection may carry another.
    async fn forward(
        &mut self,
        head: &RequestHead,
        routed: &Routed<'_>,
    ) -> Result<bool, TaskError> {
        let server = self.server;
        let site = &routed.site;
        let request_type = match site.tls_client {
            Some(_) => ProxyRequestType::HttpsForward,
            None => ProxyRequestType::HttpForward,
        };
        let permit = server
            .gate
            .permit(self.task, Some(request_type), &site.upstream)?;
        if let Some(user) = &self.task.user {
            user.check_user_agent(head.headers("user-agent"))
                .map_err(TaskError::Policy)?;
        }
        let mut extra = std::mem::take(&mut self.added);
        extra.truncate(self.forwarded_len);
        extra.extend_from_slice(match head.minor_version {
            0 => b"Via: 1.0 ",
            _ => b"Via: 1.1 ",
        });
        extra.extend_from_slice(server.pseudonym(&routed.host).as_bytes());
        extra.extend_from_slice(b"\r\n");
        let request = http::Request {
            head,
            path: &routed.path,
            upstream: &site.upstream,
            tls: site.tls_client.is_some(),
            host: Some(routed.host_header),
            extra_headers: &extra,
            consumed_header: self.consumed_authorization.then_some("authorization"),
            rsp_header_timeout: permit.site().and_then(|site| site.rsp_header_timeout),
        };
        let mut source = PooledOrNew {
            server,
            site,
            permit,
        };
        let exchanged = http::forward(
            &mut self.client,
            self.task,
            &request,
            &mut source,
            server.forward_env(),
        )
        .await;
        // Kept for the next request: its capacity, and the client's line at its start.
        self.added = extra;
        let exchanged = exchanged?;
        // One that named its client (a PROXY header), or that a user's own settings shaped,
        // is kept for no other client.
        let shared = !source.permit.shapes_connections();
        if let Some(conn) = exchanged
            .upstream
            .filter(|conn| shared && !conn.names_client)
        {
            site.pool.put(conn);
        }
        Ok(exchanged.keep_client)
    }
}

/// A kept connection of the site's pool, else a new one through the escaper.
struct PooledOrNew<'a> {
    server: &'a HttpRproxyServer,
    site: &'a Site,
    permit: Permit<'a>,
}

impl UpstreamSource for PooledOrNew<'_> {
    async fn connection(
        &mut self,
        task: &mut TaskContext,
        fresh: bool,
    ) -> Result<(UpstreamConn, bool), TaskError> {
        let user_keepalive = self.permit.user_upstream_keepalive();
        if !fresh
            && !self.permit.shapes_connections()
            && let Some(conn) = self.site.pool.take(user_keepalive.as_ref())
        {
            return Ok((conn, true));
        }
        let site = self.site;
        let tls_config = || {
            site.tls_client
                .as_ref()
                .ok_or_else(|| TaskError::Internal("no tls_client".into()))
        };
        let forward = self
            .server
            .escaper
            .http_forward(
                task,
                &self.permit,
                site.tls_client.is_some(),
                site.tls_name.as_deref(),
                tls_config,
            )
            .await?;
        Ok((UpstreamConn::from_forward(forward, task), false))
    }
}
