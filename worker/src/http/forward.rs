//! One request forwarded and its response relayed back. The request head goes out as the
//! server describes it ([`Request`]); the body follows while the response is watched for (an
//! upstream may answer early, 413 or 401, and stop reading); interim responses pass through;
//! the final response goes to the client with the proxy's own framing and connection choice.
//! A kept connection the upstream closed meanwhile fails before any answer: a request without
//! a body that is safe to repeat is sent again on a new one.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::HostPort;
use g3proxy_proto::http1::{self, BodyFraming, RequestHead, ResponseHead};
use g3proxy_shared::config::servers::HttpSessionConfig;
use g3proxy_shared::types::{MAX_DURATION, SpeedLimit};
use tokio::time::Instant;

use super::HttpClient;
use crate::conn::{self, ReadError, Stream, write_all, write_all_within};
use crate::context::{Context, Phase};
use crate::error::TaskError;
use crate::escapers::{Forward, RequestForm};
use crate::relay::{self, RelayPolicy, Side};
use crate::task::{RequestLog, TaskContext};

/// An upstream connection that carries forwarded requests.
pub struct UpstreamConn {
    pub stream: Stream,
    /// Bytes read from the upstream and not yet handled.
    pub buffer: Vec<u8>,
    /// How requests are written on it: to the origin, or to a next-hop proxy.
    pub form: RequestForm,
    /// The escaper that made it, and its ends, for the notes of every task that uses it.
    pub escaper: Arc<str>,
    pub next_hop: SocketAddr,
    pub bound: SocketAddr,
    pub speed_limit: Option<SpeedLimit>,
    /// Its far end was told the client (a PROXY header): only that client's requests.
    pub names_client: bool,
}

impl UpstreamConn {
    /// The connection an escaper's [`Forward`] gives, its notes taken from `task`.
    pub fn from_forward(forward: Forward, task: &TaskContext) -> UpstreamConn {
        UpstreamConn {
            stream: forward.connected.stream,
            buffer: Vec::new(),
            form: forward.form,
            escaper: task.notes.escaper.clone().unwrap_or_else(|| "".into()),
            next_hop: forward.connected.next_hop,
            bound: forward.connected.bound,
            speed_limit: forward.connected.speed_limit,
            names_client: forward.connected.names_client,
        }
    }

    /// Notes on `task` what this connection went through (it may be older than the task),
    /// and logs the request's `Connected` event (once, whatever retries follow).
    fn note(&self, task: &mut TaskContext, request: (&RequestLog, &RequestHead)) {
        task.notes.escaper = Some(self.escaper.clone());
        task.notes.next_hop = Some(self.next_hop);
        task.notes.bound = Some(self.bound);
        task.notes.upstream_limit = self.speed_limit;
        task.notes
            .connected_at
            .get_or_insert_with(std::time::Instant::now);
        task.log_stage("Connected", Some(request));
    }

    /// Whether it may carry another request, having been idle since `idle_since`: nothing
    /// unread, and neither closed by the upstream nor sent anything since. Tokio's readiness
    /// knows that without a system call, but lags behind the kernel by up to a turn of the
    /// I/O driver; it is trusted only for a connection idle less than [`TRUSTED_IDLE`], which
    /// under load is every reuse. A close or a stray byte (an idle-timeout 408) that soon
    /// after a complete response is a broken upstream; later ones are asked of the kernel,
    /// so that such a connection carries no request, least of all another client's.
    pub fn is_reusable(&self, idle_since: Instant) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        if idle_since.elapsed() < TRUSTED_IDLE {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if self.stream.poll_readable(&mut cx).is_pending() {
                return true;
            }
        }
        matches!(
            self.stream.try_read(&mut [0u8; 1]),
            Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}

/// Where [`forward`] gets its upstream connection.
pub trait UpstreamSource {
    /// A connection for the request, and whether it was kept from an earlier one; with
    /// `fresh`, a new one (the kept one just failed).
    fn connection(
        &mut self,
        task: &mut TaskContext,
        fresh: bool,
    ) -> impl Future<Output = Result<(UpstreamConn, bool), TaskError>> + Send;
}

/// A request as the server forwards it.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    /// The origin-form path to send.
    pub path: &'a str,
    /// Where it goes: `Host` (unless `host` says otherwise) and the absolute form's authority.
    pub upstream: &'a HostPort,
    /// Whether the upstream is spoken to over TLS (`https`).
    pub tls: bool,
    /// `Host` as the client sent it, for a reverse proxy; else the upstream's authority.
    pub host: Option<&'a [u8]>,
    /// Lines the server adds to the request (`X-Forwarded-For`, `Via`), each ending in CRLF.
    pub extra_headers: &'a [u8],
    /// A header that was for us, not passed on (`authorization` at a gateway with users,
    /// the path-selection header at a forward proxy); lower case.
    pub consumed_header: Option<&'a str>,
    /// The user's explicit site's `http_rsp_header_recv_timeout`, ahead of the user's own.
    pub rsp_header_timeout: Option<Duration>,
}

/// How a forward ended.
pub struct Exchanged {
    /// Whether the client connection may carry another request.
    pub keep_client: bool,
    /// The upstream connection, when it may carry another request (never while draining).
    pub upstream: Option<UpstreamConn>,
}

const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// How long a kept connection's readiness alone vouches for it ([`UpstreamConn::is_reusable`]).
const TRUSTED_IDLE: Duration = Duration::from_millis(20);

/// How long an upload that failed toward the upstream waits for the upstream's early answer.
const EARLY_ANSWER_GRACE: Duration = Duration::from_secs(2);

/// What every forward of one server uses: its HTTP session keys, its relay policy, and the
/// worker's context (the drain phase, the buffer cache).
#[derive(Clone, Copy)]
pub struct ForwardEnv<'a> {
    pub session: &'a HttpSessionConfig,
    pub policy: &'a RelayPolicy,
    pub context: &'a Context,
}

/// Forwards `request` on a connection from `source` and relays the response to `client`.
/// While the worker drains, the response goes out with `Connection: close` and the session
/// ends.
pub async fn forward(
    client: &mut HttpClient<'_>,
    task: &mut TaskContext,
    request: &Request<'_>,
    source: &mut impl UpstreamSource,
    env: ForwardEnv<'_>,
) -> Result<Exchanged, TaskError> {
    // The heads' scratch buffer goes back to the cache however the exchange ends.
    let mut out = env.context.buffers.take();
    let request_log = task.begin_request();
    task.notes.upstream = Some(request.upstream.clone());
    task.log_stage("Created", Some((&request_log, request.head)));
    let exchanged = exchange(client, task, request, &request_log, source, env, &mut out).await;
    env.context.buffers.give(out);
    if let Err(error) = &exchanged {
        task.notes.reason.set(error.reason());
    }
    task.log_request(request_log, request.head);
    exchanged
}

async fn exchange(
    client: &mut HttpClient<'_>,
    task: &mut TaskContext,
    request: &Request<'_>,
    request_log: &RequestLog,
    source: &mut impl UpstreamSource,
    env: ForwardEnv<'_>,
    out: &mut Vec<u8>,
) -> Result<Exchanged, TaskError> {
    let ForwardEnv {
        session,
        policy,
        context,
    } = env;
    let policy = &policy
        .for_user(task.user.as_deref())
        .with_upstream_limit(task.notes.upstream_limit);
    let draining = context.phase() != Phase::Serving;
    let head = request.head;
    let framing = head
        .body_framing()
        .map_err(|e| TaskError::Client(e.to_string()))?;
    // A client that waits for `100 Continue` is answered here, before its body is relayed;
    // waiting for the upstream's own answer would need the body copy and the response read
    // to run at once, for a saving of one round trip to a client that sends anyway.
    let answer_continue = head.expects_continue() && framing != BodyFraming::Empty;
    let forwarded = if answer_continue {
        Cow::Owned(head.without_expect())
    } else {
        Cow::Borrowed(head)
    };
    let retryable = framing == BodyFraming::Empty
        && IDEMPOTENT
            .iter()
            .any(|m| head.method.eq_ignore_ascii_case(m));
    let idle_timeout = policy.idle_timeout();
    let mut fresh = false;
    let (mut upstream, response, body_sent) = loop {
        let (mut upstream, reused) = source.connection(task, fresh).await?;
        match fresh {
            false => task.count_ready(reused),
            true => task.count_renew(),
        }
        upstream.note(task, (request_log, request.head));
        let (absolute_form, authorization) = match &upstream.form {
            RequestForm::Origin => (false, ""),
            RequestForm::Absolute { authorization } => {
                (true, authorization.as_deref().unwrap_or(""))
            }
        };
        let extra_headers = match authorization {
            "" => Cow::Borrowed(request.extra_headers),
            authorization => Cow::Owned([authorization.as_bytes(), request.extra_headers].concat()),
        };
        let outgoing = http1::Outgoing {
            path: request.path,
            upstream: request.upstream,
            tls: request.tls,
            absolute_form,
            framing,
            keep_alive: true,
            extra_headers: &extra_headers,
            host: request.host,
            consumed_header: request.consumed_header,
        };
        out.clear();
        http1::write_request_head(&forwarded, &outgoing, out);
        let sent = write_all(&upstream.stream, out).await;
        if sent.is_ok() && answer_continue {
            write_all_within(
                &client.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                idle_timeout,
            )
            .await
            .map_err(TaskError::ClientIo)?;
        }
        let result = match sent {
            Ok(()) => {
                let exchange = send_body_and_read_response(
                    client,
                    task,
                    &mut upstream,
                    framing,
                    request,
                    session,
                    policy,
                );
                exchange.await
            }
            Err(e) => Err(TaskError::UpstreamIo(e)),
        };
        match result {
            Ok((response, body_sent)) => break (upstream, response, body_sent),
            Err(TaskError::UpstreamIo(_)) if reused && retryable => fresh = true,
            Err(error) => return Err(error),
        }
    };
    task.notes.rsp_status = Some(response.code);
    if response.code == 407 && matches!(upstream.form, RequestForm::Absolute { .. }) {
        // The next hop's challenge is for our credentials, not the client's: passed on,
        // the client would answer it to us.
        return Err(TaskError::next_hop_wants_credentials());
    }
    let response_framing = response
        .body_framing(&head.method)
        .map_err(|e| TaskError::UpstreamProtocol(e.to_string()))?;
    // An upstream that answered before the whole request body arrived (413, 401) leaves
    // the rest of that body unread on both connections: neither can carry another request.
    client.unread_upload = !body_sent;
    let keep_client =
        head.keep_alive() && body_sent && !draining && response_framing != BodyFraming::UntilClose;
    out.clear();
    http1::write_response_head(
        &response,
        head.minor_version,
        response_framing,
        keep_client,
        b"",
        out,
    );
    // A sized body already read with the head goes out in the same write: one send for
    // a small response instead of two. (Not under a speed limit, which meters the body.)
    let limiter = policy.download_limiter_for(task.user.as_deref());
    let mut body_framing = response_framing;
    let mut sent_with_head = 0u64;
    if let (BodyFraming::Length(length), None) = (response_framing, &limiter) {
        let take = (upstream.buffer.len() as u64).min(length) as usize;
        out.extend_from_slice(&upstream.buffer[..take]);
        upstream.buffer.drain(..take);
        sent_with_head = take as u64;
        body_framing = BodyFraming::Length(length - sent_with_head);
    }
    client.replied = true;
    write_all_within(&client.stream, out, idle_timeout)
        .await
        .map_err(TaskError::ClientIo)?;
    let copied = sent_with_head
        + relay::copy_body(
            &upstream.stream,
            &mut upstream.buffer,
            &client.stream,
            body_framing,
            idle_timeout,
            limiter,
        )
        .await
        .map_err(|(side, e)| match side {
            Side::Reader => TaskError::UpstreamIo(e),
            Side::Writer => TaskError::ClientIo(e),
        })?;
    task.notes.bytes_down += copied;
    // A draining worker keeps no connection for requests it will not take.
    let reusable = body_sent
        && !draining
        && response.keep_alive()
        && response_framing != BodyFraming::UntilClose;
    Ok(Exchanged {
        keep_client,
        upstream: reusable.then_some(upstream),
    })
}

/// Sends the request body while watching for the response, and returns the final
/// response head with whether the whole body went out. The response-head timeout runs from
/// the end of the body, so a long upload is no timeout.
async fn send_body_and_read_response(
    client: &mut HttpClient<'_>,
    task: &mut TaskContext,
    upstream: &mut UpstreamConn,
    framing: BodyFraming,
    request: &Request<'_>,
    session: &HttpSessionConfig,
    policy: &RelayPolicy,
) -> Result<(ResponseHead, bool), TaskError> {
    let minor_version = request.head.minor_version;
    let idle_timeout = policy.idle_timeout();
    let body = relay::copy_body(
        &client.stream,
        &mut client.buffer,
        &upstream.stream,
        framing,
        idle_timeout,
        policy.upload_limiter_for(task.user.as_deref()),
    );
    tokio::pin!(body);
    let mut body_sent = framing == BodyFraming::Empty;
    // The site's, else the user's own, else the server's.
    let rsp_header_recv_timeout = request.rsp_header_timeout.unwrap_or_else(|| {
        task.user
            .as_ref()
            .and_then(|u| u.config().http_rsp_header_recv_timeout)
            .unwrap_or(session.rsp_header_recv_timeout)
            .0
    });
    loop {
        let response = read_response_head(
            &upstream.stream,
            &mut upstream.buffer,
            session.rsp_header_max_size.0,
        );
        tokio::pin!(response);
        let response = loop {
            if body_sent {
                break tokio::time::timeout(rsp_header_recv_timeout, &mut response)
                    .await
                    .map_err(|_| TaskError::UpstreamTimeout("response head"))??;
            }
            tokio::select! {
                sent = &mut body => match sent {
                    Ok(sent) => {
                        task.notes.bytes_up += sent;
                        body_sent = true;
                    }
                    Err((Side::Reader, e)) => return Err(TaskError::ClientIo(e)),
                    // An upstream that answered early and closed makes the upload fail:
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
            if minor_version == 0 {
                continue;
            }
            let mut out = Vec::new();
            http1::write_response_head(
                &response,
                minor_version,
                BodyFraming::Empty,
                true,
                b"",
                &mut out,
            );
            write_all_within(&client.stream, &out, idle_timeout)
                .await
                .map_err(TaskError::ClientIo)?;
            continue;
        }
        return Ok((response, body_sent));
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
