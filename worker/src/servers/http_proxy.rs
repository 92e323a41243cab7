//! `type: http_proxy`: HTTP/1.x forward proxy. Per client connection: read a request head,
//! then either tunnel (CONNECT, through the shared relay) or forward the request to the origin
//! (absolute URI) and its response back, keeping both connections alive when allowed.
//!
//! Draining: the response in flight is sent with `Connection: close` and the connection ends;
//! an idle keep-alive connection is served one more request (with `close`) rather than cut,
//! so no client's request is lost to a reload.

use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::http1::{self, BodyFraming, RequestHead, RequestTarget, ResponseHead};
use g3proxy_proto::{HostPort, Parsed};
use g3proxy_shared::config::servers::HttpProxyConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::{Context, Phase, ServerCounters};
use crate::debug;
use crate::error::TaskError;
use crate::escapers::Escaper;
use crate::relay::{self, RelayLimits, Side, read_buf, write_all, write_all_within};

pub struct HttpProxyServer {
    pub config: HttpProxyConfig,
    escaper: Arc<Escaper>,
    pub counters: Arc<ServerCounters>,
    limits: RelayLimits,
}

/// An upstream connection kept for the client's next request to the same origin.
struct Upstream {
    target: HostPort,
    stream: TcpStream,
    buffer: Vec<u8>,
}

enum Next {
    KeepAlive,
    Close,
}

const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

impl HttpProxyServer {
    pub fn new(
        config: HttpProxyConfig,
        escaper: Arc<Escaper>,
        counters: Arc<ServerCounters>,
    ) -> Self {
        let limits = super::relay_limits(
            config.task_idle_check_interval.0,
            config.task_idle_max_count,
            config.tcp_copy_buffer_size.0,
        );
        HttpProxyServer {
            config,
            escaper,
            counters,
            limits,
        }
    }

    pub async fn serve(&self, client: TcpStream, context: &Context) {
        let _ = client.set_nodelay(true);
        let mut session = Session {
            server: self,
            context,
            client,
            buffer: Vec::new(),
            upstream: None,
            replied: false,
        };
        if let Err(error) = session.run().await {
            error.log(&self.counters.name, session.client.peer_addr().ok());
            if !session.replied {
                session.reply_error(&error).await;
            }
        }
    }

    fn idle_timeout(&self) -> Duration {
        self.limits.idle_check_interval * self.limits.idle_max_count
    }
}

struct Session<'a> {
    server: &'a HttpProxyServer,
    context: &'a Context,
    client: TcpStream,
    /// Bytes read from the client and not yet handled.
    buffer: Vec<u8>,
    upstream: Option<Upstream>,
    /// Whether a response head already went to the client for the current request.
    replied: bool,
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
            let next = match head
                .proxy_target()
                .map_err(|e| TaskError::Client(e.to_string()))?
            {
                RequestTarget::Tunnel(target) => self.tunnel(target).await?,
                RequestTarget::Forward {
                    upstream,
                    path,
                    tls: false,
                } => self.forward(&head, upstream, &path).await?,
                RequestTarget::Forward { tls: true, .. } => {
                    return Err(TaskError::Client(
                        "https forward needs tls_client on this server".into(),
                    ));
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
        let mut deadline = Instant::now() + wait;
        let mut phase = self.context.phase.clone();
        loop {
            if !self.buffer.is_empty() {
                match http1::parse_request(&self.buffer) {
                    Ok(Parsed::Complete(head, used)) => {
                        self.buffer.drain(..used);
                        return Ok(Some(head));
                    }
                    Ok(Parsed::Partial) => {}
                    Err(http1::HeadError::TooManyHeaders) => {
                        return Err(TaskError::ClientHeadTooLarge);
                    }
                    Err(e) => return Err(TaskError::Client(e.to_string())),
                }
                if self.buffer.len() as u64 >= config.req_header_max_size.0 {
                    return Err(TaskError::ClientHeadTooLarge);
                }
                // Once a request has begun, the rest of its head must come in time.
                deadline = deadline.min(Instant::now() + config.req_header_recv_timeout.0);
            }
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, read_buf(&self.client, &mut self.buffer)) => read,
                _ = phase.wait_for(|p| *p == Phase::ForceQuit) => return Ok(None),
            };
            match read {
                Ok(Ok(0)) if self.buffer.is_empty() => return Ok(None),
                Ok(Ok(0)) => return Err(TaskError::Client("closed inside a request head".into())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(TaskError::ClientIo(e)),
                Err(_) if self.buffer.is_empty() && !first => return Ok(None),
                Err(_) => return Err(TaskError::ClientTimeout("request head")),
            }
        }
    }

    async fn tunnel(&mut self, target: HostPort) -> Result<Next, TaskError> {
        let upstream = self.server.escaper.connect(&target).await?;
        self.replied = true;
        write_all_within(
            &self.client,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            self.server.idle_timeout(),
        )
        .await
        .map_err(TaskError::ClientIo)?;
        if !self.buffer.is_empty() {
            write_all(&upstream, &self.buffer)
                .await
                .map_err(TaskError::UpstreamIo)?;
        }
        self.buffer = Vec::new();
        let outcome = relay::relay_tunnel(
            &self.client,
            &upstream,
            self.server.limits,
            self.context.phase.clone(),
        )
        .await;
        debug!(
            "server {}: tunnel to {target} ended: {outcome}",
            self.server.counters.name
        );
        Ok(Next::Close)
    }

    /// The kept upstream connection if it goes to `target` and is still open, else a new one.
    async fn upstream_for(&mut self, target: &HostPort) -> Result<(Upstream, bool), TaskError> {
        if let Some(kept) = self.upstream.take()
            && kept.target == *target
            && kept.buffer.is_empty()
            && matches!(kept.stream.try_read(&mut [0u8; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            return Ok((kept, true));
        }
        let stream = self.server.escaper.connect(target).await?;
        Ok((
            Upstream {
                target: target.clone(),
                stream,
                buffer: Vec::new(),
            },
            false,
        ))
    }

    async fn forward(
        &mut self,
        head: &RequestHead,
        target: HostPort,
        path: &str,
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
        http1::write_request_head(&forwarded, path, &target, false, framing, true, &mut out);
        // A reused connection the origin closed meanwhile fails before any answer: a request
        // with no body that is safe to repeat is sent again on a fresh connection.
        let retryable = framing == BodyFraming::Empty
            && IDEMPOTENT
                .iter()
                .any(|m| head.method.eq_ignore_ascii_case(m));
        let (mut upstream, response, body_sent) = loop {
            let (mut upstream, reused) = self.upstream_for(&target).await?;
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
        let response_framing = response
            .body_framing(&head.method)
            .map_err(|e| TaskError::UpstreamProtocol(e.to_string()))?;
        let draining = self.context.phase() != Phase::Serving;
        // An origin that answered before the whole request body arrived (413, 401) leaves
        // the rest of that body unread on both connections: neither can carry another request.
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
        self.replied = true;
        write_all_within(&self.client, &out, self.server.idle_timeout())
            .await
            .map_err(TaskError::ClientIo)?;
        relay::copy_body(
            &upstream.stream,
            &mut upstream.buffer,
            &self.client,
            response_framing,
            self.server.idle_timeout(),
        )
        .await
        .map_err(|(side, e)| match side {
            Side::Reader => TaskError::UpstreamIo(e),
            Side::Writer => TaskError::ClientIo(e),
        })?;
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
                    sent = &mut body => {
                        sent.map_err(|(side, e)| match side {
                            Side::Reader => TaskError::ClientIo(e),
                            Side::Writer => TaskError::UpstreamIo(e),
                        })?;
                        body_sent = true;
                    }
                    response = &mut response => break response?,
                }
            };
            // Interim responses go to the client as they are; the final one follows.
            if (100..200).contains(&response.code) && response.code != 101 {
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
async fn read_response_head(
    stream: &TcpStream,
    buffer: &mut Vec<u8>,
    max_size: u64,
) -> Result<ResponseHead, TaskError> {
    loop {
        if !buffer.is_empty() {
            match http1::parse_response(buffer) {
                Ok(Parsed::Complete(head, used)) => {
                    buffer.drain(..used);
                    return Ok(head);
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(TaskError::UpstreamProtocol(e.to_string())),
            }
            if buffer.len() as u64 >= max_size {
                return Err(TaskError::UpstreamProtocol(
                    "response head too large".into(),
                ));
            }
        }
        match read_buf(stream, buffer).await {
            Ok(0) => {
                return Err(TaskError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(TaskError::UpstreamIo(e)),
        }
    }
}
