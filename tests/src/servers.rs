//! Test peers on loopback: an HTTP/1.1 origin (keep-alive, answers `hello`, or the length of
//! a request body) and a TCP echo server. One thread per connection: simple and plenty here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

pub struct Origin {
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl Origin {
    pub fn start(ip: &str) -> Origin {
        Self::start_at(&format!("{ip}:0"))
    }

    /// An origin on exactly `address` (`ip:port`), for clients that cannot name a port.
    pub fn start_at(address: &str) -> Origin {
        let listener = TcpListener::bind(address).expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let served = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (counter, accepted) = (served.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::Relaxed);
                let counter = counter.clone();
                thread::spawn(move || serve_http(stream, &counter));
            }
        });
        Origin {
            addr,
            served,
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests were answered: proof that traffic flows now.
    pub fn wait_for_progress(&self, more: u64) {
        let target = self.served() + more;
        crate::wait_until(
            std::time::Duration::from_secs(60),
            &format!("the origin to answer {more} more requests"),
            || (self.served() >= target).then_some(()),
        );
    }

    pub fn url(&self, path: &str) -> String {
        match self.addr {
            SocketAddr::V4(v4) => format!("http://{v4}{path}"),
            SocketAddr::V6(v6) => format!("http://[{}]:{}{path}", v6.ip(), v6.port()),
        }
    }
}

fn serve_http(stream: TcpStream, served: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = if chunked {
            match read_chunked(&mut reader) {
                Some(body) => body,
                None => return,
            }
        } else {
            let mut body = vec![0u8; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        // `GET /bytes/N`: N bytes of `pattern_byte`, for transfers large enough to fill
        // socket and TLS buffers on the way.
        if let Some(size) = request_line
            .split_whitespace()
            .nth(1)
            .and_then(|target| target.rsplit_once("/bytes/"))
            .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            let connection = if close { "close" } else { "keep-alive" };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: {connection}\r\n\r\n"
            );
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            let block: Vec<u8> = (0..65536).map(pattern_byte).collect();
            let mut sent = 0;
            while sent < size {
                let take = (size - sent).min(block.len());
                if writer.write_all(&block[..take]).is_err() {
                    return;
                }
                sent += take;
            }
            served.fetch_add(1, Ordering::Relaxed);
            if close {
                return;
            }
            continue;
        }
        let answer = if request_line.starts_with("POST") {
            format!("got {} bytes", body.len())
        } else {
            "hello".to_string()
        };
        let connection = if close { "close" } else { "keep-alive" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        if close {
            return;
        }
    }
}

/// The byte at `offset` of a `/bytes/N` answer (the pattern repeats every 64 KiB).
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 65536 % 251) as u8
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                reader.read_line(&mut trailer).ok()?;
                if trailer == "\r\n" {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

pub struct Echo {
    pub addr: SocketAddr,
}

impl Echo {
    pub fn start(ip: &str) -> Echo {
        let listener = TcpListener::bind((ip, 0)).expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut reader = stream.try_clone().expect("clone");
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        Echo { addr }
    }
}

/// A complete `200 OK` response with `body`, closing: for [`RecordingOrigin`].
pub fn http_answer(body: &'static str) -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_boxed_str()).as_bytes()
}

/// An origin that records each request's head and the body bytes it chose to read, then
/// sends a fixed response and closes: for checking exactly what the proxy passed on.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    received: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl RecordingOrigin {
    /// `read_body`: read the request's `Content-Length` bytes before answering; without it
    /// the origin answers at once and stops reading, as one refusing an upload does.
    pub fn start(response: &'static [u8], read_body: bool) -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (sender, received) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sender = sender.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut seen = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        seen.extend_from_slice(line.as_bytes());
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if read_body {
                        let mut body = vec![0u8; length];
                        if reader.read_exact(&mut body).is_ok() {
                            seen.extend_from_slice(&body);
                        }
                    }
                    let mut writer = stream;
                    let _ = writer.write_all(response);
                    let _ = sender.send(seen);
                    // Keep the socket open until the proxy closes it, still not reading.
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                    std::thread::park_timeout(std::time::Duration::from_secs(10));
                });
            }
        });
        RecordingOrigin { addr, received }
    }

    /// What the next request brought the origin.
    pub fn next_request(&self) -> String {
        let seen = self
            .received
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a request at the origin");
        String::from_utf8_lossy(&seen).into_owned()
    }
}

/// An HTTPS origin: answers every request with `hello over tls` and closes.
pub struct TlsOrigin {
    pub addr: SocketAddr,
}

impl TlsOrigin {
    pub fn start(config: Arc<rustls::ServerConfig>) -> TlsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tls origin");
        let addr = listener.local_addr().expect("tls origin addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = config.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(20)));
                    let Ok(connection) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    let mut reader = BufReader::new(&mut tls);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nhello over tls",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsOrigin { addr }
    }
}

/// A UDP echo server on 127.0.0.1.
pub struct UdpEcho {
    pub addr: SocketAddr,
}

impl UdpEcho {
    pub fn start() -> UdpEcho {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp echo");
        let addr = socket.local_addr().expect("udp echo addr");
        thread::spawn(move || {
            let mut buffer = [0u8; 65_535];
            while let Ok((n, from)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&buffer[..n], from);
            }
        });
        UdpEcho { addr }
    }
}

/// An HTTP origin that answers each request with the address it came from (the proxy's
/// source address, for bind addresses and routes).
pub struct SourceOrigin {
    pub addr: SocketAddr,
}

impl SourceOrigin {
    pub fn start(ip: &str) -> SourceOrigin {
        Self::serve(ip, false)
    }

    /// The same, keeping each connection for more requests (for tests of kept upstream
    /// connections).
    pub fn start_keep_alive(ip: &str) -> SourceOrigin {
        Self::serve(ip, true)
    }

    fn serve(ip: &str, keep_alive: bool) -> SourceOrigin {
        let listener = TcpListener::bind((ip, 0)).expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default();
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut writer = stream;
                    let connection = if keep_alive { "keep-alive" } else { "close" };
                    loop {
                        let mut line = String::new();
                        let mut read_any = false;
                        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                            read_any = true;
                            line.clear();
                        }
                        if !read_any {
                            return;
                        }
                        let answered = write!(
                            writer,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{peer}",
                            peer.len()
                        );
                        if answered.is_err() || !keep_alive {
                            return;
                        }
                    }
                });
            }
        });
        SourceOrigin { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// A listener on `[::1]:port` that never accepts, its one-place queue taken: the kernel
/// drops every later SYN, so a connection attempt hangs until its own timeout.
pub fn blackhole_v6(port: u16) -> (std::os::fd::OwnedFd, TcpStream) {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    let address: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let SocketAddr::V6(v6) = address else {
        unreachable!("an IPv6 literal")
    };
    bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)).expect("bind [::1]");
    listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
    let filler = TcpStream::connect(address).expect("fill the queue");
    (fd, filler)
}
