//! `type: proxy_http`: through a next-hop HTTP proxy. A TCP connection is a `CONNECT` to it;
//! a forwarded HTTP request goes to it in absolute form (an https one too when the next hop
//! does the TLS, `http_forward_capability.forward_https`), with our own `Proxy-Authorization`
//! when `proxy_username` is set: the client's credentials for us never travel on.
//!
//! The `CONNECT` answer is read with `MSG_PEEK` and only its own bytes are taken off the
//! socket, so what the target sends right after it (a server that speaks first) stays for the
//! relay instead of being swallowed with the head.

use std::sync::Arc;

use g3proxy_proto::http1::{self, ResponseHead};
use g3proxy_proto::{Host, HostPort, Parsed, base64};
use g3proxy_shared::config::escapers::{DEFAULT_HTTP_PROXY_PORT, ProxyHttpConfig, QueryStrategy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connect::{SocketOptions, connect_first};
use super::{Connected, Dependencies, EscaperOps, Forward, RequestForm};
use crate::conn::Stream;
use crate::error::TaskError;
use crate::pick::Picker;
use crate::resolvers::Resolver;

pub struct ProxyHttpEscaper {
    config: ProxyHttpConfig,
    peers: Picker<HostPort>,
    resolver: Option<Arc<Resolver>>,
    /// `Proxy-Authorization: Basic …\r\n`, when we have credentials for the next hop.
    authorization: Option<Arc<str>>,
}

impl ProxyHttpEscaper {
    pub fn build(config: &ProxyHttpConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let peers = config
            .proxy_addr
            .iter()
            .map(|entry| {
                let addr = entry.addr.with_default_port(DEFAULT_HTTP_PROXY_PORT);
                (addr, entry.weight)
            })
            .collect();
        let authorization = config.proxy_username.as_ref().map(|user| {
            let password = config.proxy_password.as_ref().map_or("", |p| p.0.as_str());
            let token = base64::encode(format!("{user}:{password}").as_bytes());
            Arc::from(format!("Proxy-Authorization: Basic {token}\r\n"))
        });
        Ok(ProxyHttpEscaper {
            config: config.clone(),
            peers: Picker::new(peers, config.proxy_addr_pick_policy),
            resolver: config.resolver.as_deref().map(|name| deps.resolver(name)),
            authorization,
        })
    }

    /// A TCP connection to one next hop, picked by the policy; a name is resolved and its
    /// addresses tried in turn (`tcp_connect.max_retry`).
    async fn connect_peer(&self) -> Result<Connected, TaskError> {
        // The config refuses the hashing policies here: no key is needed.
        let peer = self.peers.pick(b"");
        let addresses = match (&peer.host, &self.resolver) {
            (Host::Ip(ip), _) => vec![*ip],
            (Host::Domain(name), Some(resolver)) => {
                resolver.resolve(name, QueryStrategy::default()).await?
            }
            // The loader refuses a named next hop without a resolver.
            (Host::Domain(name), None) => {
                return Err(TaskError::Resolver(format!("{name}: no resolver")));
            }
        };
        let options = SocketOptions::default();
        connect_first(
            addresses,
            peer.port,
            |_| None,
            &self.config.tcp_connect,
            &options,
        )
        .await
    }

    async fn connect_through(
        &self,
        tcp: &mut TcpStream,
        target: &HostPort,
    ) -> Result<(), TaskError> {
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str(authorization);
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(TaskError::UpstreamIo)?;
        let max = self.config.http_connect_rsp_header_max_size.0 as usize;
        let response = read_head_exactly(tcp, max).await?;
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
    async fn tcp_connect(&self, target: &HostPort) -> Result<Connected, TaskError> {
        let connected = self.connect_peer().await?;
        let mut tcp = connected.stream.into_tcp();
        tokio::time::timeout(
            self.config.peer_negotiation_timeout.0,
            self.connect_through(&mut tcp, target),
        )
        .await
        .map_err(|_| TaskError::UpstreamTimeout("CONNECT to the next-hop proxy"))??;
        Ok(Connected {
            stream: Stream::plain(tcp),
            ..connected
        })
    }

    async fn http_forward(
        &self,
        _target: &HostPort,
        tls: bool,
    ) -> Option<Result<Forward, TaskError>> {
        if tls && !self.config.http_forward_capability.forward_https {
            // TLS is ours: through a CONNECT tunnel, in origin form.
            return None;
        }
        Some(self.connect_peer().await.map(|connected| Forward {
            connected,
            form: RequestForm::Absolute {
                authorization: self.authorization.clone(),
            },
        }))
    }
}

/// Reads one response head and not a byte more: peeks, takes off the socket only the bytes
/// up to the blank line (CRLF or bare LF, as `httparse` reads them), and waits for more while
/// the head is incomplete.
async fn read_head_exactly(tcp: &mut TcpStream, max: usize) -> Result<ResponseHead, TaskError> {
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
        tcp.read_exact(&mut window[..ours])
            .await
            .map_err(TaskError::UpstreamIo)?;
        if end.is_some() {
            return match http1::parse_response(&head) {
                Ok(Parsed::Complete(response, _)) => Ok(response),
                Ok(Parsed::Partial) => Err(TaskError::UpstreamProtocol(
                    "the next-hop proxy's CONNECT answer is cut short".into(),
                )),
                Err(e) => Err(TaskError::UpstreamProtocol(format!(
                    "the next-hop proxy's CONNECT answer: {e}"
                ))),
            };
        }
    }
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
