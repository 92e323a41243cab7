//! The client side of an HTTP/1 session: request heads read one after another (the first
//! within `req_header_recv_timeout`, later ones after at most `pipeline_read_idle_timeout`
//! of silence), error replies, and a close that neither cuts a TLS response short nor lets
//! an unread upload reset it.

use std::time::Duration;

use g3proxy_proto::http1::{self, RequestHead};
use g3proxy_shared::config::servers::HttpSessionConfig;
use tokio::time::Instant;

use crate::conn::{self, ReadError, Stream, read_buf, write_all_within};
use crate::context::{Context, QuitRegistration};
use crate::error::TaskError;

/// How a server asks for credentials, with its realm.
#[derive(Clone, Copy)]
pub enum Challenge<'a> {
    /// A proxy: `Proxy-Authenticate` with 407.
    Proxy(&'a str),
    /// A gateway: `WWW-Authenticate` with 401.
    Origin(&'a str),
}

pub struct HttpClient<'c> {
    pub stream: Stream,
    /// Bytes read from the client and not yet handled.
    pub buffer: Vec<u8>,
    /// Whether a response head already went out for the current request.
    pub replied: bool,
    /// The upstream answered before the client finished its upload: the rest is still coming.
    pub unread_upload: bool,
    requests: u64,
    /// How a wait for the next request ends at force-quit.
    quit: QuitRegistration<'c>,
}

/// How long, and how much, a close waits on an upload nobody will read, so that the kernel
/// does not answer those bytes with a reset that could destroy the response at the client.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 4 << 20;

impl<'c> HttpClient<'c> {
    pub fn new(stream: Stream, buffer: Vec<u8>, context: &'c Context) -> HttpClient<'c> {
        HttpClient {
            stream,
            buffer,
            replied: false,
            unread_upload: false,
            requests: 0,
            quit: QuitRegistration::new(&context.quit_wakers),
        }
    }

    /// Reads the next request head; `None` when the client closed or stayed idle between
    /// requests, or the worker is force-quitting.
    pub async fn read_head(
        &mut self,
        config: &HttpSessionConfig,
        context: &Context,
    ) -> Result<Option<RequestHead>, TaskError> {
        let first = self.requests == 0;
        self.requests += 1;
        self.replied = false;
        if !first && self.buffer.is_empty() {
            // An idle keep-alive connection holds no read buffer.
            context.buffers.give(std::mem::take(&mut self.buffer));
            // Between requests the idle timeout applies until the first byte; once a request
            // has begun, the rest of its head must come within req_header_recv_timeout.
            let waited = tokio::select! {
                waited = tokio::time::timeout(
                    config.pipeline_read_idle_timeout.0,
                    self.stream.readable(),
                ) => waited,
                _ = context.force_quit(&mut self.quit) => return Ok(None),
            };
            match waited {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(TaskError::ClientIo(e)),
                Err(_) => return Ok(None),
            }
        }
        if self.buffer.capacity() == 0 {
            self.buffer = context.buffers.take();
        }
        let deadline = Instant::now() + config.req_header_recv_timeout.0;
        let read = conn::read_until(
            &self.stream,
            &mut self.buffer,
            config.req_header_max_size.0 as usize,
            deadline,
            http1::parse_request,
        );
        let result = tokio::select! {
            result = read => result,
            _ = context.force_quit(&mut self.quit) => return Ok(None),
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

    /// Answers the current request with `error`'s status and closes, unless a response head
    /// already went out (then the close alone tells the client). A failed login is answered
    /// with the server's challenge: 407 from a proxy, 401 from a gateway.
    pub async fn reply_error(
        &mut self,
        error: &TaskError,
        timeout: Duration,
        challenge: Challenge<'_>,
    ) {
        if self.replied {
            return;
        }
        self.replied = true;
        let (code, reason, header) = match (error, challenge) {
            (TaskError::Auth(_), Challenge::Proxy(realm)) => (
                407,
                "Proxy Authentication Required",
                Some(("Proxy-Authenticate", realm)),
            ),
            (TaskError::Auth(_), Challenge::Origin(realm)) => {
                (401, "Unauthorized", Some(("WWW-Authenticate", realm)))
            }
            _ => {
                let (code, reason) = error.http_status();
                (code, reason, None)
            }
        };
        let challenge = match header {
            // A realm is config text; quotes or line breaks in it must not break the header.
            Some((name, realm)) => format!(
                "{name}: Basic realm=\"{}\"\r\n",
                realm.replace(['"', '\\', '\r', '\n'], "")
            ),
            None => String::new(),
        };
        let body = format!("{code} {reason}\n");
        let response = format!(
            "HTTP/1.1 {code} {reason}\r\n{challenge}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = write_all_within(&self.stream, response.as_bytes(), timeout).await;
    }

    /// Ends the session: a TLS client learns the response ended here, not that it was cut
    /// (close_notify), and an upload nobody read is drained a while first.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown_write()).await;
        if self.unread_upload {
            linger(&self.stream).await;
        }
    }
}

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
