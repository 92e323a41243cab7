//! Raw clients that know exactly what they sent and got: HTTP through a forward proxy (one
//! connection per request, or keep-alive), CONNECT and SOCKS5 tunnels, and [`Load`], which
//! runs many of them until told to stop and counts every failed request.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn connect(proxy: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn request(origin: SocketAddr, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\nConnection: {connection}\r\n\r\n")
}

/// Reads one response; returns its status line, whether the server closes, and the body.
fn read_response(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> std::io::Result<(String, bool, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed before a response ({} bytes)", pending.len()),
            ));
        }
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end);
    let status = head.lines().next().unwrap_or_default().to_string();
    let lower = head.to_ascii_lowercase();
    let close = lower.contains("\r\nconnection: close");
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while pending.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed inside a body",
            ));
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    let body = pending.drain(..length).collect();
    Ok((status, close, body))
}

/// One GET through an HTTP proxy on a fresh connection; the status line and body.
pub fn http_get(proxy: SocketAddr, origin: SocketAddr) -> std::io::Result<(String, Vec<u8>)> {
    let mut stream = connect(proxy)?;
    stream.write_all(request(origin, false).as_bytes())?;
    let (status, _, body) = read_response(&mut stream, &mut Vec::new())?;
    Ok((status, body))
}

pub fn open_connect_tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut stream = connect(proxy).expect("connect to proxy");
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .expect("send CONNECT");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).expect("CONNECT answer"),
            1,
            "proxy closed during CONNECT"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT refused: {head}");
    stream
}

pub fn open_socks5_tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut stream = connect(proxy).expect("connect to socks proxy");
    stream.write_all(&[5, 1, 0]).expect("greeting");
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).expect("method choice");
    assert_eq!(choice, [5, 0]);
    let mut request = vec![5, 1, 0];
    match target.ip() {
        IpAddr::V4(v4) => {
            request.push(1);
            request.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            request.push(4);
            request.extend_from_slice(&v6.octets());
        }
    }
    request.extend_from_slice(&target.port().to_be_bytes());
    stream.write_all(&request).expect("request");
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).expect("reply");
    assert_eq!(reply[1], 0, "socks request refused with code {}", reply[1]);
    let rest = if reply[3] == 4 { 16 + 2 } else { 4 + 2 };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).expect("bound address");
    stream
}

/// Sends `message` through an echo tunnel and checks it comes back.
pub fn roundtrip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("write to tunnel");
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).expect("read from tunnel");
    assert_eq!(back, message);
}

#[derive(Debug, Default)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    pub errors: Vec<String>,
}

impl LoadStats {
    fn failure(&mut self, error: String) {
        self.failed += 1;
        if self.errors.len() < 20 {
            self.errors.push(error);
        }
    }

    fn merge(&mut self, other: LoadStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.errors.extend(
            other
                .errors
                .into_iter()
                .take(20usize.saturating_sub(self.errors.len())),
        );
    }
}

/// Clients that send requests until stopped (or `limit` passes), counting failures.
pub struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    clients: Vec<JoinHandle<LoadStats>>,
}

impl Load {
    /// `fresh` clients open a connection per request; `keep_alive` clients reuse theirs until
    /// the proxy says `Connection: close`.
    pub fn start(
        proxy: SocketAddr,
        origin: SocketAddr,
        fresh: usize,
        keep_alive: usize,
        limit: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut clients = Vec::new();
        for index in 0..fresh + keep_alive {
            let (stop, progress) = (stop.clone(), progress.clone());
            let keep = index >= fresh;
            clients.push(std::thread::spawn(move || {
                let mut stats = LoadStats::default();
                let mut connection: Option<(TcpStream, Vec<u8>)> = None;
                // Bounded in time and in count, whatever happens to the stop flag.
                for _ in 0..2_000_000 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > limit {
                        break;
                    }
                    let result = (|| -> std::io::Result<(String, bool, Vec<u8>)> {
                        if connection.is_none() {
                            connection = Some((connect(proxy)?, Vec::new()));
                        }
                        let (stream, pending) = connection.as_mut().expect("connected above");
                        stream.write_all(request(origin, keep).as_bytes())?;
                        read_response(stream, pending)
                    })();
                    match result {
                        Ok((status, close, body))
                            if status.starts_with("HTTP/1.1 200") && body == b"hello" =>
                        {
                            stats.ok += 1;
                            progress.fetch_add(1, Ordering::Relaxed);
                            if close || !keep {
                                connection = None;
                            }
                        }
                        Ok((status, _, body)) => {
                            stats.failure(format!("{status} {:?}", String::from_utf8_lossy(&body)));
                            connection = None;
                        }
                        Err(error) => {
                            stats.failure(error.to_string());
                            connection = None;
                        }
                    }
                }
                stats
            }));
        }
        Load {
            stop,
            progress,
            clients,
        }
    }

    /// Requests answered so far, by every client.
    pub fn answered(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests were answered: proof that traffic flows now.
    pub fn wait_for_progress(&self, more: u64) {
        let target = self.answered() + more;
        crate::wait_until(
            Duration::from_secs(30),
            &format!("{more} more answered requests"),
            || (self.answered() >= target).then_some(()),
        );
    }

    pub fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for client in self.clients {
            total.merge(client.join().expect("load client"));
        }
        total
    }
}

/// Runs curl (20 s at most) and returns its output, failing the test if curl fails.
pub fn curl(args: &[&str]) -> String {
    let output = try_curl(args);
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs curl (20 s at most) and returns what it did.
pub fn try_curl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed")
}

/// The HTTP status curl gets with `args` (the body discarded), or `curl exit N` when curl
/// itself failed (a refused SOCKS request, a closed connection).
pub fn curl_status(args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend(args);
    let output = try_curl(&all);
    match output.status.code() {
        Some(0) => String::from_utf8_lossy(&output.stdout).into_owned(),
        code => format!("curl exit {code:?}"),
    }
}

/// How long [`s_client`] reads.
pub enum Until {
    /// Until the server closes (then openssl ends).
    Close,
    /// This many bytes (an echo never closes first), then our side closes.
    Bytes(usize),
}

/// Sends `input` over TLS to 127.0.0.1:`port` with `openssl s_client` (server name
/// `localhost`, checked against the test CA; with the test's client certificate when
/// `with_client_cert`) and returns what came back. A refused handshake gives what came
/// before it, usually nothing.
pub fn s_client(
    port: u16,
    certs: &crate::Certs,
    with_client_cert: bool,
    input: &str,
    until: Until,
) -> String {
    use std::process::Stdio;
    let mut args = vec![
        "s_client".to_string(),
        "-connect".into(),
        format!("127.0.0.1:{port}"),
        "-servername".into(),
        "localhost".into(),
        "-CAfile".into(),
        certs.path("ca.pem").display().to_string(),
        "-verify_return_error".into(),
        // -quiet implies -ign_eof: openssl waits for the server, not for our input's end.
        "-quiet".into(),
    ];
    if matches!(until, Until::Bytes(_)) {
        args.push("-no_ign_eof".into());
    }
    if with_client_cert {
        for (flag, name) in [("-cert", "client.pem"), ("-key", "client.key")] {
            args.extend([flag.to_string(), certs.path(name).display().to_string()]);
        }
    }
    let mut child = std::process::Command::new("openssl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refused handshake may end openssl before it reads its input: a broken pipe then.
    let _ = stdin.write_all(input.as_bytes());
    let mut stdout = child.stdout.take().expect("stdout");
    let mut answer = Vec::new();
    match until {
        Until::Close => {
            drop(stdin);
            // A server that never closes fails the test here, not hangs it. (The answers
            // are small: the pipe holds them until openssl has ended.)
            crate::wait_until(Duration::from_secs(20), "openssl s_client to end", || {
                child.try_wait().ok().flatten()
            });
            let _ = stdout.read_to_end(&mut answer);
        }
        Until::Bytes(wanted) => {
            answer.resize(wanted, 0);
            let mut got = 0;
            while got < wanted {
                match stdout.read(&mut answer[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            answer.truncate(got);
            drop(stdin);
        }
    }
    let _ = child.wait();
    String::from_utf8_lossy(&answer).into_owned()
}
