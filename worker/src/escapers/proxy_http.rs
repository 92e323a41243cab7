//! `type: proxy_http` and `type: proxy_https` (the same over TLS, see `next_hop.rs`): through
//! a next-hop HTTP proxy. A TCP connection is a `CONNECT` to it;
//! a forwarded HTTP request goes to it in absolute form (an https one too when the next hop
//! does the TLS, `http_forward_capability.forward_https`), with our own `Proxy-Authorization`
//! when `proxy_username` is set: the client's credentials for us never travel on.
//!
//! The `CONNECT` answer is read with `MSG_PEEK` (under TLS, a byte at a time from what is
//! decrypted) and only its own bytes are taken off the stream, so what the target sends right
//! after it (a server that speaks first) stays for the relay instead of being swallowed with
//! the head.

use std::sync::Arc;

use g3proxy_proto::http1::{self, ResponseHead};
use g3proxy_proto::{HostPort, Parsed, base64};
use g3proxy_shared::config::escapers::{DEFAULT_HTTP_PROXY_PORT, HttpPeerKeys, ProxyHttpConfig};
use tokio::net::TcpStream;

use super::next_hop::NextHop;
use super::{Connected, Dependencies, EscaperOps, Forward, Leg, RequestForm};
use crate::conn::{Stream, read_exact, write_all_within};
use crate::error::TaskError;

pub struct ProxyHttpEscaper {
    next_hop: NextHop,
    http: HttpPeerKeys,
    /// `Proxy-Authorization: Basic …\r\n`, when we have credentials for the next hop.
    authorization: Option<Arc<str>>,
}

impl ProxyHttpEscaper {
    /// `proxy_http`, or `proxy_https` when the config has `tls`.
    pub fn build(config: &ProxyHttpConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let next_hop = &config.next_hop;
        let authorization = next_hop.proxy_username.as_ref().map(|user| {
            let password = next_hop
                .proxy_password
                .as_ref()
                .map_or("", |p| p.0.as_str());
            let token = base64::encode(format!("{user}:{password}").as_bytes());
            Arc::from(format!("Proxy-Authorization: Basic {token}\r\n"))
        });
        Ok(ProxyHttpEscaper {
            next_hop: NextHop::build(next_hop, config.tls.as_ref(), DEFAULT_HTTP_PROXY_PORT, deps)?,
            http: config.http.clone(),
            authorization,
        })
    }

    async fn connect_through(&self, peer: &Stream, target: &HostPort) -> Result<(), TaskError> {
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(authorization);
        }
        request.push_str("\r\n");
        let timeout = self.next_hop.negotiation_timeout();
        write_all_within(peer, request.as_bytes(), timeout)
            .await
            .map_err(TaskError::UpstreamIo)?;
        let max = self.http.http_connect_rsp_header_max_size.0 as usize;
        let response = match peer.plain_tcp() {
            Some(tcp) => read_head_exactly(tcp, max).await?,
            None => read_head_bytewise(peer, max).await?,
        };
        match response.code {
            200..=299 => Ok(()),
            407 => Err(TaskError::next_hop_wants_credentials()),
            code => Err(TaskError::UpstreamProtocol(format!(
                "the next-hop proxy answered CONNECT {target} with {code} {}",
                response.reason
            ))),
        }
    }
}

impl EscaperOps for ProxyHttpEscaper {
    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        let connected = self.next_hop.connect(leg).await?;
        tokio::time::timeout(
            self.next_hop.negotiation_timeout(),
            self.connect_through(&connected.stream, leg.target),
        )
        .await
        .map_err(|_| TaskError::UpstreamTimeout("CONNECT to the next-hop proxy"))??;
        Ok(connected)
    }

    async fn http_forward(&self, leg: &Leg<'_>, tls: bool) -> Option<Result<Forward, TaskError>> {
        if tls && !self.http.http_forward_capability.forward_https {
            // TLS is ours: through a CONNECT tunnel, in origin form.
            return None;
        }
        Some(self.next_hop.connect(leg).await.map(|connected| Forward {
            connected,
            form: RequestForm::Absolute {
                authorization: self.authorization.clone(),
            },
        }))
    }
}

/// Reads one response head from under TLS, a byte at a time from the decrypted buffer, so
/// that what follows the head stays for the relay.
async fn read_head_bytewise(peer: &Stream, max: usize) -> Result<ResponseHead, TaskError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        if head.len() >= max {
            return Err(TaskError::UpstreamProtocol(
                "the next-hop proxy's CONNECT answer is too large".into(),
            ));
        }
        read_exact(peer, &mut byte)
            .await
            .map_err(TaskError::UpstreamIo)?;
        head.push(byte[0]);
        if byte[0] == b'\n' && head_end(&head, head.len().saturating_sub(3)).is_some() {
            return parse_head(&head);
        }
    }
}

fn parse_head(head: &[u8]) -> Result<ResponseHead, TaskError> {
    match http1::parse_response(head) {
        Ok(Parsed::Complete(response, _)) => Ok(response),
        Ok(Parsed::Partial) => Err(TaskError::UpstreamProtocol(
            "the next-hop proxy's CONNECT answer is cut short".into(),
        )),
        Err(e) => Err(TaskError::UpstreamProtocol(format!(
            "the next-hop proxy's CONNECT answer: {e}"
        ))),
    }
}

/// Reads one response head and not a byte more: peeks, takes off the socket only the bytes
/// up to the blank line (CRLF or bare LF, as `httparse` reads them), and waits for more while
/// the head is incomplete.
async fn read_head_exactly(tcp: &TcpStream, max: usize) -> Result<ResponseHead, TaskError> {
    let mut head: Vec<u8> = Vec::new();
    let mut window = vec![0u8; max.min(4096)];
    loop {
        let room = max.saturating_sub(head.len());
        if room == 0 {
            return Err(TaskError::UpstreamProtocol(
                "the next-hop proxy's CONNECT answer is too large".into(),
            ));
        }
        let take = room.min(window.len());
        let peeked = tcp
            .peek(&mut window[..take])
            .await
            .map_err(TaskError::UpstreamIo)?;
        if peeked == 0 {
            return Err(TaskError::UpstreamIo(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        // The blank line may straddle what we had and what we peeked.
        let search_from = head.len().saturating_sub(3);
        head.extend_from_slice(&window[..peeked]);
        let end = head_end(&head, search_from);
        let ours = match end {
            Some(end) => peeked - (head.len() - end),
            None => peeked,
        };
        head.truncate(head.len() - (peeked - ours));
        // These bytes were just peeked, so they are there to read.
        take_peeked(tcp, &mut window[..ours]).await?;
        if end.is_some() {
            return parse_head(&head);
        }
    }
}

/// Takes off the socket the bytes a peek just showed.
async fn take_peeked(tcp: &TcpStream, buf: &mut [u8]) -> Result<(), TaskError> {
    let mut filled = 0;
    while filled < buf.len() {
        tcp.readable().await.map_err(TaskError::UpstreamIo)?;
        match tcp.try_read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(TaskError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(TaskError::UpstreamIo(e)),
        }
    }
    Ok(())
}

/// Where a head ends: after the first `\n\n` or `\n\r\n` at or after `from`.
fn head_end(buffer: &[u8], from: usize) -> Option<usize> {
    (from..buffer.len()).find_map(|i| match &buffer[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_first_blank_line() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbanner", 0), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbanner", 0), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nX: y\r\n", 0), None);
        assert_eq!(head_end(b"X\r\n\r\n", 1), Some(5));
        assert_eq!(head_end(b"", 0), None);
    }
}
