//! [`Stream`]: one TCP connection, plain or under TLS, with the readiness API the relay and
//! the servers use (`readable`, `try_read`, `writable`, `try_write`, `flush`, all on `&self`,
//! so one task can read and write the same stream from two futures at once).
//!
//! TLS is driven here on rustls's sans-IO API over the socket's own non-blocking calls
//! rather than through an `AsyncRead` wrapper: a plain stream then costs nothing extra, and a
//! relay waits for readiness without holding a buffer, plain or TLS. The rustls state sits in
//! a mutex that only this connection's task ever takes, so it is never contended.
//!
//! Plaintext handed to rustls may still wait in its buffer when the socket is full; a writer
//! therefore calls [`Stream::flush`] before it goes back to waiting on something else
//! ([`write_all`] does).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// What a TLS handshake told us about the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The server name the client asked for (server side), or the one we asked for.
    pub server_name: Option<String>,
    pub alpn: Option<Vec<u8>>,
    /// The DER of the peer's end-entity certificate, when it sent one.
    pub peer_certificate: Option<Vec<u8>>,
}

struct TlsState {
    connection: rustls::Connection,
    /// Decrypted bytes wait in rustls, or the peer closed: reading will not block.
    readable_now: bool,
}

pub struct Stream {
    tcp: TcpStream,
    tls: Option<Box<Mutex<TlsState>>>,
}

/// The socket as `io::Read`/`io::Write` for rustls: `WouldBlock` passes through.
struct SocketIo<'a>(&'a TcpStream);

impl Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// The most plaintext taken into rustls per write: one record.
const MAX_PLAINTEXT_PER_WRITE: usize = 16 * 1024;

impl TlsState {
    /// Sends what rustls has queued; `WouldBlock` when the socket is full.
    fn push(&mut self, tcp: &TcpStream) -> io::Result<()> {
        while self.connection.wants_write() {
            self.connection.write_tls(&mut SocketIo(tcp))?;
        }
        Ok(())
    }

    /// Reads records from the socket and processes them; `Ok(false)` at the socket's end.
    fn pull(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        let read = self.connection.read_tls(&mut SocketIo(tcp))?;
        let processed = self.connection.process_new_packets();
        // An alert rustls queued on an error (or a ticket, a key update) goes out if it can.
        let _ = self.push(tcp);
        let state = processed.map_err(tls_error)?;
        self.readable_now = state.plaintext_bytes_to_read() > 0 || state.peer_has_closed();
        Ok(read > 0)
    }
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// The socket under a plain stream, to start TLS on it.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// The socket of a plain stream (to peek at it); `None` under TLS.
    pub fn plain_tcp(&self) -> Option<&TcpStream> {
        self.tls.is_none().then_some(&self.tcp)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn state(&self) -> Option<MutexGuard<'_, TlsState>> {
        // Only this connection's task takes the lock; a panic while holding it cannot leave
        // rustls half-updated in a way later calls would trust.
        self.tls
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Accepts TLS on `tcp` as a server, within `timeout`; `early` holds bytes of the
    /// client's hello already read from the socket.
    pub async fn accept_tls(
        tcp: TcpStream,
        early: Vec<u8>,
        config: Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> io::Result<(Stream, TlsFacts)> {
        let stream = {
            let mut connection = rustls::ServerConnection::new(config).map_err(tls_error)?;
            let mut early = early.as_slice();
            while !early.is_empty() {
                connection.read_tls(&mut early)?;
                connection.process_new_packets().map_err(tls_error)?;
            }
            Self::with_tls(tcp, connection.into())
        };
        stream.handshake(timeout).await
    }

    /// Starts TLS on `tcp` as a client of `server_name`, within `timeout`.
    pub async fn connect_tls(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> io::Result<(Stream, TlsFacts)> {
        let stream = {
            let connection =
                rustls::ClientConnection::new(config, server_name).map_err(tls_error)?;
            Self::with_tls(tcp, connection.into())
        };
        stream.handshake(timeout).await
    }

    /// Boxes the rustls state at once: a connection is kilobytes, and a future that held one
    /// across an await would make every task's future (TLS or not) that much larger.
    fn with_tls(tcp: TcpStream, connection: rustls::Connection) -> Stream {
        Stream {
            tcp,
            tls: Some(Box::new(Mutex::new(TlsState {
                connection,
                readable_now: false,
            }))),
        }
    }

    async fn handshake(self, timeout: Duration) -> io::Result<(Stream, TlsFacts)> {
        let stream = self;
        enum Step {
            Done,
            Again,
            WaitRead,
            WaitWrite,
        }
        let shake = async {
            loop {
                let step = {
                    let Some(mut state) = stream.state() else {
                        break;
                    };
                    match state.push(&stream.tcp) {
                        Ok(()) if !state.connection.is_handshaking() => Step::Done,
                        Ok(()) => match state.pull(&stream.tcp) {
                            Ok(true) => Step::Again,
                            Ok(false) => {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "closed during the TLS handshake",
                                ));
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::WaitRead,
                            Err(e) => return Err(e),
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::WaitWrite,
                        Err(e) => return Err(e),
                    }
                };
                match step {
                    Step::Done => break,
                    Step::Again => {}
                    Step::WaitRead => stream.tcp.readable().await?,
                    Step::WaitWrite => stream.tcp.writable().await?,
                }
            }
            stream.flush().await
        };
        tokio::time::timeout(timeout, shake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let facts = stream.tls_facts().unwrap_or_default();
        Ok((stream, facts))
    }

    pub fn tls_facts(&self) -> Option<TlsFacts> {
        let state = self.state()?;
        let connection = &state.connection;
        let server_name = match connection {
            rustls::Connection::Server(server) => server.server_name().map(str::to_string),
            rustls::Connection::Client(_) => None,
        };
        Some(TlsFacts {
            server_name,
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            peer_certificate: connection
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.to_vec()),
        })
    }

    /// Waits until a read would not block (data, or the end of the stream).
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Ready when a read would not block; otherwise the task is woken when one would. The
    /// socket keeps one reading waker, not a waiter node per wait: one task reads a stream,
    /// and a waiting future then holds no more than a reference.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(state) = self.state()
            && state.readable_now
        {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Reads what is there now; `WouldBlock` when nothing is, `Ok(0)` at the end.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(mut state) = self.state() else {
            // SAFETY: `buf` is `buf.len()` writable bytes.
            return unsafe { recv_plain(&self.tcp, buf.as_mut_ptr(), buf.len()) };
        };
        loop {
            match state.connection.reader().read(buf) {
                Ok(n) => {
                    if n == 0 || n == buf.len() {
                        // Maybe more waits (or the close stays readable): look again next time.
                        state.readable_now = true;
                    } else {
                        state.readable_now = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: many clients do, and for a relay it
                // is the end of the stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            state.readable_now = false;
            if !state.pull(&self.tcp)? {
                state.readable_now = true;
                return Ok(0);
            }
        }
    }

    /// Appends what is there now to `buffer`.
    pub fn try_read_buf(&self, buffer: &mut Vec<u8>) -> io::Result<usize> {
        if self.tls.is_none() {
            let spare = buffer.spare_capacity_mut();
            // SAFETY: the spare capacity is `spare.len()` writable bytes, and the `n` that
            // recv reports written are initialized before the length covers them.
            unsafe {
                let n = recv_plain(&self.tcp, spare.as_mut_ptr().cast(), spare.len())?;
                buffer.set_len(buffer.len() + n);
                return Ok(n);
            }
        }
        let start = buffer.len();
        let room = (buffer.capacity() - start).max(4096);
        buffer.resize(start + room, 0);
        let result = self.try_read(&mut buffer[start..]);
        buffer.truncate(start + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Waits until a write may make progress (for TLS: after what rustls holds went out).
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// [`Stream::writable`] as a poll, with the socket's one writing waker.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.tls.is_some() {
            return self.poll_flush(cx);
        }
        self.tcp.poll_write_ready(cx)
    }

    /// Writes what can be written now; `WouldBlock` when nothing can.
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        let Some(mut state) = self.state() else {
            return self.tcp.try_write(data);
        };
        state.push(&self.tcp)?;
        let take = data.len().min(MAX_PLAINTEXT_PER_WRITE);
        let accepted = state.connection.writer().write(&data[..take])?;
        match state.push(&self.tcp) {
            Ok(()) => {}
            // Encrypted and queued: `flush` or the next write sends it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(accepted)
    }

    /// Sends everything rustls still holds.
    pub async fn flush(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let Some(mut state) = self.state() else {
                    return Poll::Ready(Ok(()));
                };
                match state.push(&self.tcp) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    /// Ends our sending direction: close_notify for TLS, then a TCP half-close.
    pub async fn shutdown_write(&self) {
        self.queue_close_notify();
        let _ = self.flush().await;
        self.shutdown_socket_write();
    }

    /// The first step of [`Stream::shutdown_write`]: close_notify queued for TLS (sent by the
    /// next flush). Once per stream.
    pub fn queue_close_notify(&self) {
        if let Some(mut state) = self.state() {
            state.connection.send_close_notify();
        }
    }

    /// The last step of [`Stream::shutdown_write`], after the flush: the TCP half-close.
    pub fn shutdown_socket_write(&self) {
        let _ = nix::sys::socket::shutdown(self.tcp.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    }
}

/// One `recv` on a plain socket into `len` bytes at `into`. A short read means the kernel's
/// receive queue was empty when it answered, so the socket's readiness is cleared as of before
/// the read (tokio keeps an event that came after it): the next wait goes straight to epoll
/// instead of through a `recv` that could only say EAGAIN. That is one system call less per
/// message on every keep-alive connection and tunnel. (One exception: Linux also stops a read
/// short at TCP urgent data with bytes still queued. A peer that sends it delays its own
/// connection until more data comes or the idle rule ends it; no byte is lost.)
///
/// # Safety
/// `into` must be valid for writes of `len` bytes.
unsafe fn recv_plain(tcp: &TcpStream, into: *mut u8, len: usize) -> io::Result<usize> {
    let mut received = None;
    let result = tcp.try_io(tokio::io::Interest::READABLE, || {
        // SAFETY: the caller vouches for `into` and `len`.
        let n = unsafe { libc::recv(tcp.as_raw_fd(), into.cast(), len, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        received = Some(n);
        if n > 0 && n < len {
            // Not an error: tells tokio the queue is dry (the bytes are returned below).
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match received {
        Some(n) => Ok(n),
        None => result,
    }
}

/// Reads what is readable now into `buffer`, waiting for readiness first.
pub async fn read_buf(from: &Stream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        from.readable().await?;
        if buffer.capacity() == buffer.len() {
            buffer.reserve(8 * 1024);
        }
        match from.try_read_buf(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// Fills `buf` exactly, and takes no byte more off the stream: what follows stays for the
/// next reader. `UnexpectedEof` when the stream ends first.
pub async fn read_exact(from: &Stream, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        from.readable().await?;
        match from.try_read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `data` and flushes it out of any TLS buffer.
pub async fn write_all(to: &Stream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    to.flush().await
}

/// [`write_all`] toward a peer that must keep reading: one that takes nothing for `timeout`
/// (a client that never reads its response) fails with `TimedOut` instead of holding the task.
/// What the socket takes at once goes without arming a timer, as most writes do.
pub async fn write_all_within(to: &Stream, data: &[u8], timeout: Duration) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        match to.try_write(rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    // A plain socket took it all; TLS may still hold records to flush.
    if rest.is_empty() && !to.is_tls() {
        return Ok(());
    }
    tokio::time::timeout(timeout, write_all(to, rest))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer stopped reading",
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn within<F: std::future::Future>(what: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), what)
            .await
            .expect("woken")
    }

    /// A short read clears the readiness it saw; what comes after it wakes the reader again,
    /// and so does the close after the last bytes.
    #[tokio::test]
    async fn readiness_cleared_by_a_short_read_comes_back_with_new_data() {
        let (mut far, near) = crate::conn::test_pair().await;
        let mut buffer = Vec::with_capacity(8192);
        far.write_all(b"first").await.unwrap();
        assert_eq!(within(read_buf(&near, &mut buffer)).await.unwrap(), 5);
        // Dry now, without a system call telling us so.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(near.poll_readable(&mut cx).is_pending());
        far.write_all(b"second").await.unwrap();
        assert_eq!(within(read_buf(&near, &mut buffer)).await.unwrap(), 6);
        assert_eq!(buffer, b"firstsecond");
        // The last bytes and the close in one go: both are seen.
        far.write_all(b"last").await.unwrap();
        far.shutdown().await.unwrap();
        drop(far);
        buffer.clear();
        let mut total = 0;
        loop {
            match within(read_buf(&near, &mut buffer)).await.unwrap() {
                0 => break,
                n => total += n,
            }
        }
        assert_eq!((total, buffer.as_slice()), (4, &b"last"[..]));
        // A read that fills the buffer exactly leaves the readiness alone.
        let (mut far, near) = crate::conn::test_pair().await;
        far.write_all(&[7u8; 16]).await.unwrap();
        let mut exact = [0u8; 16];
        within(near.readable()).await.unwrap();
        assert_eq!(near.try_read(&mut exact).unwrap(), 16);
        assert!(near.poll_readable(&mut cx).is_ready());
    }
}
