//! The client connection layer: what every server reads from. A [`ClientConn`] is a
//! [`Stream`] (plain or TLS) with the client and local addresses as they stand after any
//! PROXY protocol header, the TLS facts, and bytes already read ahead (a PROXY header's tail,
//! protocol detection) that the next reader must see first.
//!
//! [`read_until`] is the one way a server reads a message: fill the buffer, ask a sans-IO
//! parser, read more on `Partial`, within a size cap and a deadline. HTTP heads, SOCKS
//! negotiation, PROXY headers and protocol detection all go through it.

pub mod sockopt;
pub mod stream;

use std::io;
use std::net::SocketAddr;

use g3proxy_proto::Parsed;
use g3proxy_shared::config::tls::TlsServerConfig;
use tokio::time::Instant;

pub use stream::{Stream, TlsFacts, read_buf, read_exact, write_all, write_all_within};

pub struct ClientConn {
    pub stream: Stream,
    /// The client as the socket or a PROXY protocol header reported it.
    pub client_addr: SocketAddr,
    /// The address the client connected to, likewise.
    pub local_addr: SocketAddr,
    /// Boxed: most connections are plain, and every task future carries this struct.
    pub tls: Option<Box<TlsFacts>>,
    /// Bytes read from the stream and not yet consumed by any parser.
    pub buffer: Vec<u8>,
}

impl ClientConn {
    pub fn new(stream: Stream, client_addr: SocketAddr, local_addr: SocketAddr) -> ClientConn {
        ClientConn {
            stream,
            client_addr,
            local_addr,
            tls: None,
            buffer: Vec::new(),
        }
    }

    /// Terminates TLS on this plain connection; bytes already read ahead are the start of
    /// the client's hello and go to the handshake first.
    pub async fn start_tls(self, config: &TlsServerConfig) -> io::Result<ClientConn> {
        let (stream, facts) = Stream::accept_tls(
            self.stream.into_tcp(),
            self.buffer,
            config.rustls.clone(),
            config.handshake_timeout,
        )
        .await?;
        tracing::debug!(
            "client {}: tls with sni {} alpn {}{}",
            self.client_addr,
            facts.server_name.as_deref().unwrap_or("-"),
            facts
                .alpn
                .as_deref()
                .map_or("-".into(), String::from_utf8_lossy),
            if facts.peer_certificate.is_some() {
                ", client certificate"
            } else {
                ""
            }
        );
        Ok(ClientConn {
            stream,
            tls: Some(Box::new(facts)),
            buffer: Vec::new(),
            ..self
        })
    }
}

/// Terminates TLS on `conn` for `task`: the handshake runs in an allocation of its own (a
/// task's future is as large as its largest state, and it should be the relay's), and a
/// failed one is logged and ends the connection.
pub async fn terminate_tls(
    conn: ClientConn,
    config: &TlsServerConfig,
    task: &crate::task::TaskContext,
) -> Option<ClientConn> {
    let handshake = Box::pin(conn.start_tls(config));
    match handshake.await {
        Ok(conn) => Some(conn),
        Err(error) => {
            let counter = match error.kind() {
                std::io::ErrorKind::TimedOut => &task.server.listen_timeout,
                _ => &task.server.listen_failed,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                "server {}: client {}: tls handshake failed: {error}",
                task.server_name(),
                task.client_addr
            );
            None
        }
    }
}

/// A connected pair on loopback for unit tests: the far end as tokio has it, the near end as
/// a [`Stream`].
#[cfg(test)]
pub(crate) async fn test_pair() -> (tokio::net::TcpStream, Stream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connect = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (accepted, connected) = tokio::join!(listener.accept(), connect);
    (accepted.unwrap().0, Stream::plain(connected.unwrap()))
}

/// Why [`read_until`] gave up.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The parser refused the bytes.
    Invalid(E),
    /// More than `max_size` bytes and still no complete message.
    TooLarge,
    /// The peer closed; `clean` when it did so before sending any byte of the message.
    Closed {
        clean: bool,
    },
    TimedOut,
    Io(io::Error),
}

/// Reads from `stream` into `buffer` until `parse` accepts a whole message, which it returns
/// after removing its bytes from `buffer` (later bytes stay for the next reader).
pub async fn read_until<T, E>(
    stream: &Stream,
    buffer: &mut Vec<u8>,
    max_size: usize,
    deadline: Instant,
    mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, E>,
) -> Result<T, ReadError<E>> {
    loop {
        if !buffer.is_empty() {
            match parse(buffer).map_err(ReadError::Invalid)? {
                Parsed::Complete(message, used) => {
                    buffer.drain(..used);
                    return Ok(message);
                }
                Parsed::Partial if buffer.len() >= max_size => return Err(ReadError::TooLarge),
                Parsed::Partial => {}
            }
        }
        match tokio::time::timeout_at(deadline, read_buf(stream, buffer)).await {
            Ok(Ok(0)) => {
                return Err(ReadError::Closed {
                    clean: buffer.is_empty(),
                });
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ReadError::Io(e)),
            Err(_) => return Err(ReadError::TimedOut),
        }
    }
}
