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
use g3proxy_proto::http1::{self, BodyFraming, RequestHead, RequestTarget, ResponseHead};
use g3proxy_shared::config::servers::{HttpProxyConfig, ServerCommon};
use g3proxy_shared::config::tls::{OptionalTlsClient, TlsClientConfig, TlsServerConfig};
use g3proxy_shared::types::MAX_DURATION;
use tokio::time::Instant;

use super::{BuildContext, ServeConnections};
use crate::conn::{self, ClientConn, ReadError, Stream, read_buf, write_all, write_all_within};
use crate::context::{Context, Phase};
use crate::error::{Forbidden, TaskError};
use crate::escapers::{Escaper, RequestForm};
use crate::relay::{self, RelayPolicy, Side};
use crate::task::TaskContext;

pub struct HttpProxyServer {
    config: HttpProxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
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

/// An upstream connection kept for the client's next request to the same origin.
struct Upstream {
    target: HostPort,
    tls: bool,
    stream: Stream,
    buffer: Vec<u8>,
    /// How requests are written on it: to the origin, or to a next-hop proxy.
    form: RequestForm,
}

enum Next {
    KeepAlive,
    Close,
}

const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// How long an upload that failed toward the origin waits for the origin's early answer.
const EARLY_ANSWER_GRACE: Duration = Duration::from_secs(2);

impl ServeConnections for HttpProxyServer {
    type Config = HttpProxyConfig;

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
                client: conn.stream,
                buffer: conn.buffer,
                upstream: None,
                replied: false,
                unread_upload: false,
            };
            if let Err(error) = session.run().await {
                error.log(session.task);
                if !session.replied {
                    session.reply_error(&error).await;
                }
            }
            // A TLS client learns the response ended here, not that it was cut (close_notify).
            let _ =
                tokio::time::timeout(Duration::from_secs(5), session.client.shutdown_write()).await;
            if session.unread_upload {
                linger(&session.client).await;
            }
        }
    }
}

impl HttpProxyServer {
    fn idle_timeout(&self) -> Duration {
        self.policy.idle_timeout()
    }
}

struct Session<'a> {
    server: &'a HttpProxyServer,
    task: &'a mut TaskContext,
    client: Stream,
    /// Bytes read from the client and not yet handled.
    buffer: Vec<u8>,
    upstream: Option<Upstream>,
    /// Whether a response head already went to the client for the current request.
    replied: bool,
    /// The origin answered before the client finished its upload: the rest is still coming.
    unread_upload: bool,
}

/// How long, and how much, a close waits on an upload nobody will read, so that the kernel
/// does not answer those bytes with a reset that could destroy the response at the client.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 4 << 20;

/// Reads and drops what the client still sends, until it closes, `LINGER` passes or
/// `LINGER_MAX_BYTES` came.
async fn linger(client: &Stream) {
    let drain = async {
        let mut scratch = Vec::with_capacity(16 * 1024);
        let mut drained = 0;
        while drained < LINGER_MAX_BYTES {
            scratch.clear();
            match read_buf(client, &mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), TaskError> {
        let mut first = true;
        loop {
            self.replied = false;
            let Some(head) = self.read_request_head(first).await? else {
                return Ok(());
            };
            first = false;
            let target = head
                .proxy_target()
                .map_err(|e| TaskError::Client(e.to_string()))?;
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
            if self.buffer.is_empty() {
                // An idle keep-alive connection holds no read buffer.
                self.buffer = Vec::new();
            }
        }
    }

    /// Reads the next request head; `None` when the client closed or stayed idle between
    /// requests, or the worker is force-quitting.
    async fn read_request_head(&mut self, first: bool) -> Result<Option<RequestHead>, TaskError> {
        let config = &self.server.config;
        let wait = if first {
            config.req_header_recv_timeout.0
        } else {
            config.pipeline_read_idle_timeout.0
        };
        let mut phase = self.server.context.phase.clone();
        // Between requests the idle timeout applies until the first byte; once a request has
        // begun, the rest of its head must come within req_header_recv_timeout.
        if !first && self.buffer.is_empty() {
            let waited = tokio::select! {
                waited = tokio::time::timeout(wait, self.client.readable()) => waited,
                _ = phase.wait_for(|p| *p == Phase::ForceQuit) => return Ok(None),
            };
            match waited {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(TaskError::ClientIo(e)),
                Err(_) => return Ok(None),
            }
        }
        let deadline = Instant::now() + config.req_header_recv_timeout.0;
        let read = conn::read_until(
            &self.client,
            &mut self.buffer,
            config.req_header_max_size.0 as usize,
            deadline,
            http1::parse_request,
        );
        let result = tokio::select! {
            result = read => result,
            _ = phase.wait_for(|p| *p == Phase::ForceQuit) => return Ok(None),
        };
        match result {
            Ok(head) => Ok(Some(head)),
            Err(ReadError::Closed { clean: true }) => Ok(None),
            Err(ReadError::Closed { clean: false }) => {
                Err(TaskError::Client("closed inside a request head".into()))
            }
            Err(ReadError::Invalid(http1::HeadError::TooManyHeaders))
            | Err(ReadError::TooLarge) => Err(TaskError::ClientHeadTooLarge),
            Err(ReadError::Invalid(e)) => Err(TaskError::Client(e.to_string())),
            Err(ReadError::TimedOut) => Err(TaskError::ClientTimeout("request head")),
            Err(ReadError::Io(e)) => Err(TaskError::ClientIo(e)),
        }
    }

    async fn tunnel(&mut self, target: HostPort) -> Result<Next, TaskError> {
        let connect = Box::pin(self.server.escaper.tcp_connect(self.task, &target));
        let upstream = connect.await?;
        self.replied = true;
        write_all_within(
            &self.client,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            self.server.idle_timeout(),
        )
        .await
        .map_err(TaskError::ClientIo)?;
        let early = std::mem::take(&mut self.buffer);
        let relayed = Box::pin(super::tunnel(
            &self.client,
            early,
            &upstream.stream,
            self.task,
            &self.server.policy,
            &self.server.context,
        ));
        relayed.await?;
        Ok(Next::Close)
    }

    /// The kept upstream connection if it goes to `target` the same way and is still open,
    /// else a new one.
    async fn upstream_for(
        &mut self,
        target: &HostPort,
        tls: bool,
    ) -> Result<(Upstream, bool), TaskError> {
        if let Some(kept) = self.upstream.take()
            && kept.target == *target
            && kept.tls == tls
            && kept.buffer.is_empty()
            && matches!(kept.stream.try_read(&mut [0u8; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            return Ok((kept, true));
        }
        let tls_client = &self.server.tls_client;
        let forward = self
            .server
            .escaper
            .http_forward(self.task, target, tls, || tls_client.config())
            .await?;
        Ok((
            Upstream {
                target: target.clone(),
                tls,
                stream: forward.connected.stream,
                buffer: Vec::new(),
                form: forward.form,
            },
            false,
        ))
    }

    async fn forward(
        &mut self,
        head: &RequestHead,
        target: HostPort,
        path: &str,
        tls: bool,
    ) -> Result<Next, TaskError> {
        let framing = head
            .body_framing()
            .map_err(|e| TaskError::Client(e.to_string()))?;
        let client_keep_alive = head.keep_alive();
        // A client that waits for `100 Continue` is answered here, before its body is relayed;
        // waiting for the origin's own answer would need the body copy and the response read
        // to run at once, for a saving of one round trip to a client that sends anyway.
        let answer_continue = head.expects_continue() && framing != BodyFraming::Empty;
        let forwarded = if answer_continue {
            head.without_expect()
        } else {
            head.clone()
        };
        let mut out = Vec::with_capacity(1024);
        // A reused connection the origin closed meanwhile fails before any answer: a request
        // with no body that is safe to repeat is sent again on a fresh connection.
        let retryable = framing == BodyFraming::Empty
            && IDEMPOTENT
                .iter()
                .any(|m| head.method.eq_ignore_ascii_case(m));
        let (mut upstream, response, body_sent) = loop {
            let (mut upstream, reused) = self.upstream_for(&target, tls).await?;
            let (absolute_form, extra_headers) = match &upstream.form {
                RequestForm::Origin => (false, ""),
                RequestForm::Absolute { authorization } => {
                    (true, authorization.as_deref().unwrap_or(""))
                }
            };
            let outgoing = http1::Outgoing {
                path,
                upstream: &target,
                tls,
                absolute_form,
                framing,
                keep_alive: true,
                extra_headers: extra_headers.as_bytes(),
            };
            out.clear();
            http1::write_request_head(&forwarded, &outgoing, &mut out);
            let sent = write_all(&upstream.stream, &out).await;
            if sent.is_ok() && answer_continue {
                write_all_within(
                    &self.client,
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    self.server.idle_timeout(),
                )
                .await
                .map_err(TaskError::ClientIo)?;
            }
            let result = match sent {
                Ok(()) => {
                    self.send_body_and_read_response(&mut upstream, framing, head)
                        .await
                }
                Err(e) => Err(TaskError::UpstreamIo(e)),
            };
            match result {
                Ok((response, body_sent)) => break (upstream, response, body_sent),
                Err(TaskError::UpstreamIo(_)) if reused && retryable => continue,
                Err(error) => return Err(error),
            }
        };
        if response.code == 407 && matches!(upstream.form, RequestForm::Absolute { .. }) {
            // The next hop's challenge is for our credentials, not the client's: passed on,
            // the client would answer it to us.
            return Err(TaskError::next_hop_wants_credentials());
        }
        let response_framing = response
            .body_framing(&head.method)
            .map_err(|e| TaskError::UpstreamProtocol(e.to_string()))?;
        let draining = self.server.context.phase() != Phase::Serving;
        // An origin that answered before the whole request body arrived (413, 401) leaves
        // the rest of that body unread on both connections: neither can carry another request.
        self.unread_upload = !body_sent;
        let keep_alive = client_keep_alive
            && body_sent
            && !draining
            && response_framing != BodyFraming::UntilClose;
        out.clear();
        http1::write_response_head(
            &response,
            head.minor_version,
            response_framing,
            keep_alive,
            &mut out,
        );
        // A sized body already read with the head goes out in the same write: one send for
        // a small response instead of two. (Not under a speed limit, which meters the body.)
        let limiter = self.server.policy.download_limiter();
        let mut body_framing = response_framing;
        let mut sent_with_head = 0u64;
        if let (BodyFraming::Length(length), None) = (response_framing, &limiter) {
            let take = (upstream.buffer.len() as u64).min(length) as usize;
            out.extend_from_slice(&upstream.buffer[..take]);
            upstream.buffer.drain(..take);
            sent_with_head = take as u64;
            body_framing = BodyFraming::Length(length - sent_with_head);
        }
        self.replied = true;
        write_all_within(&self.client, &out, self.server.idle_timeout())
            .await
            .map_err(TaskError::ClientIo)?;
        let copied = sent_with_head
            + relay::copy_body(
                &upstream.stream,
                &mut upstream.buffer,
                &self.client,
                body_framing,
                self.server.idle_timeout(),
                limiter,
            )
            .await
            .map_err(|(side, e)| match side {
                Side::Reader => TaskError::UpstreamIo(e),
                Side::Writer => TaskError::ClientIo(e),
            })?;
        self.task.notes.bytes_down += copied;
        if body_sent && response.keep_alive() && response_framing != BodyFraming::UntilClose {
            self.upstream = Some(upstream);
        }
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Sends the request body while watching for the response, and returns the final
    /// response head with whether the whole body went out. An origin may answer early (413,
    /// 401) and stop reading: the answer goes to the client instead of a stalled upload. The
    /// response-head timeout runs from the end of the body, so a long upload is no timeout.
    async fn send_body_and_read_response(
        &mut self,
        upstream: &mut Upstream,
        framing: BodyFraming,
        head: &RequestHead,
    ) -> Result<(ResponseHead, bool), TaskError> {
        let config = &self.server.config;
        let idle_timeout = self.server.idle_timeout();
        let client = &self.client;
        let body = relay::copy_body(
            client,
            &mut self.buffer,
            &upstream.stream,
            framing,
            idle_timeout,
            self.server.policy.upload_limiter(),
        );
        tokio::pin!(body);
        let mut body_sent = framing == BodyFraming::Empty;
        loop {
            let response = read_response_head(
                &upstream.stream,
                &mut upstream.buffer,
                config.rsp_header_max_size.0,
            );
            tokio::pin!(response);
            let response = loop {
                if body_sent {
                    break tokio::time::timeout(config.rsp_header_recv_timeout.0, &mut response)
                        .await
                        .map_err(|_| TaskError::UpstreamTimeout("response head"))??;
                }
                tokio::select! {
                    sent = &mut body => match sent {
                        Ok(sent) => {
                            self.task.notes.bytes_up += sent;
                            body_sent = true;
                        }
                        Err((Side::Reader, e)) => return Err(TaskError::ClientIo(e)),
                        // An origin that answered early and closed makes the upload fail:
                        // its answer, if it comes, is what the client should get.
                        Err((Side::Writer, e)) => {
                            break tokio::time::timeout(EARLY_ANSWER_GRACE, &mut response)
                                .await
                                .map_err(|_| TaskError::UpstreamIo(e))??;
                        }
                    },
                    response = &mut response => break response?,
                }
            };
            if response.code == 101 {
                // We pass no Upgrade header on, so a switch is not something we asked for.
                return Err(TaskError::UpstreamProtocol(
                    "unexpected 101 switching protocols".into(),
                ));
            }
            // Interim responses go to the client as they are (HTTP/1.0 clients know none);
            // the final one follows.
            if (100..200).contains(&response.code) {
                if head.minor_version == 0 {
                    continue;
                }
                let mut out = Vec::new();
                http1::write_response_head(
                    &response,
                    head.minor_version,
                    BodyFraming::Empty,
                    true,
                    &mut out,
                );
                write_all_within(client, &out, idle_timeout)
                    .await
                    .map_err(TaskError::ClientIo)?;
                continue;
            }
            return Ok((response, body_sent));
        }
    }

    async fn reply_error(&mut self, error: &TaskError) {
        let (code, reason) = error.http_status();
        let body = format!("{code} {reason}\n");
        let response = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = write_all_within(
            &self.client,
            response.as_bytes(),
            self.server.idle_timeout(),
        )
        .await;
    }
}

/// Reads one response head into `buffer`; bytes after it stay there.
/// The caller times it (the response-head timeout starts only once the body is sent).
async fn read_response_head(
    stream: &Stream,
    buffer: &mut Vec<u8>,
    max_size: u64,
) -> Result<ResponseHead, TaskError> {
    let no_deadline = Instant::now() + MAX_DURATION;
    let read = conn::read_until(
        stream,
        buffer,
        max_size as usize,
        no_deadline,
        http1::parse_response,
    );
    read.await.map_err(|error| match error {
        ReadError::Invalid(e) => TaskError::UpstreamProtocol(e.to_string()),
        ReadError::TooLarge => TaskError::UpstreamProtocol("response head too large".into()),
        ReadError::Closed { .. } => TaskError::UpstreamIo(std::io::ErrorKind::UnexpectedEof.into()),
        ReadError::TimedOut => TaskError::UpstreamTimeout("response head"),
        ReadError::Io(e) => TaskError::UpstreamIo(e),
    })
}
