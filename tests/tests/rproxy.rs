//! Scenario: http_rproxy with real clients. curl reaches two sites by `Host` (an exact host
//! and a child of a listed domain), the default site for any other host, and a site whose
//! upstream speaks TLS; each request arrives with the client's `Host`, `X-Forwarded-For` and
//! `Via`, and a request that already passed this proxy is a loop (508); a URI in the query
//! stays a path, and an absolute-form target must name the `Host`. Kept upstream
//! connections serve later clients, unless the upstream closed them meanwhile, or named
//! their client to the upstream in a PROXY header. A TLS front picks each site's certificate by SNI, and
//! with `no_early_error_reply` answers nothing to what is not for one of its sites. Reloads
//! and a crashed worker keep it serving. The guide's examples load with `g3proxy -t`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use g3proxy_tests::group::kill;
use g3proxy_tests::{
    Certs, Group, Origin, RecordingOrigin, TlsOrigin, curl, curl_status, free_port, http_answer,
    try_curl,
};
use nix::sys::signal::Signal;

/// An upstream that answers each request on a kept-alive connection, then, 100 ms later,
/// sends a 408 and closes it, as a server at its idle timeout does; it counts those closes.
struct ClosingOrigin {
    addr: std::net::SocketAddr,
    closed: Arc<AtomicU64>,
}

impl ClosingOrigin {
    fn start() -> ClosingOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let closed = Arc::new(AtomicU64::new(0));
        let counter = closed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    let mut writer = stream;
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh");
                    let _ = writer.set_read_timeout(Some(Duration::from_millis(100)));
                    let _ = reader.read(&mut [0u8; 1]);
                    let _ = writer.write_all(
                        b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        ClosingOrigin { addr, closed }
    }
}

/// What a raw client gets back for `request` sent on `stream` (until the server closes).
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).expect("send");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

#[test]
fn sites_by_host_and_certificates_by_sni() {
    let scratch = std::env::temp_dir().join(format!("g3proxy-rproxy-{}", std::process::id()));
    let certs = Certs::make(&scratch);
    certs.make_server("other", "other.test");
    let one = RecordingOrigin::start(http_answer("one"), false);
    let two = RecordingOrigin::start(http_answer("two"), false);
    let origin = Origin::start("127.0.0.1");
    let tls_origin = TlsOrigin::start(certs.server_config());
    let stale = ClosingOrigin::start();
    let mut group = Group::with_ports(
        "rproxy",
        &[
            ("one", one.addr.port()),
            ("two", two.addr.port()),
            ("origin", origin.addr.port()),
            ("tls_origin", tls_origin.addr.port()),
            ("down", free_port("127.0.0.1")),
            ("stale", stale.addr.port()),
        ],
    );
    certs.copy_into(&group.dir);
    for name in ["other.pem", "other.key"] {
        std::fs::copy(certs.path(name), group.dir.join(name)).expect("copy certificate");
    }
    group.start();
    let port = group.port("gateway");
    let resolve = |host: &str, port: u16| format!("{host}:{port}:127.0.0.1");
    let get = |host: &str, path: &str, extra: &[&str]| {
        let mut args = vec![
            "-s".to_string(),
            "--resolve".into(),
            resolve(host, port),
            format!("http://{host}:{port}{path}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args)
    };

    // An exact host: the origin sees the client's Host, origin form, and our headers last.
    let shown = get(
        "one.test",
        "/a/b?c=1",
        &["-D", "-", "-H", "X-Forwarded-For: 10.0.0.1"],
    );
    assert!(shown.ends_with("\r\n\r\none"), "{shown}");
    // The backend's addresses stay behind the proxy (g3's http_rproxy adds no
    // X-BD-Remote-Connection-Info either).
    assert!(!shown.contains("X-BD-"), "{shown}");
    let seen = one.next_request();
    assert!(
        seen.starts_with(&format!(
            "GET /a/b?c=1 HTTP/1.1\r\nHost: one.test:{port}\r\n"
        )),
        "{seen}"
    );
    assert!(
        seen.contains(
            "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\nVia: 1.1 gw1\r\n"
        ),
        "{seen}"
    );
    // A URI in the query is part of the path, not a target.
    assert_eq!(get("one.test", "/r?u=http://two.test/secret", &[]), "one");
    let seen = one.next_request();
    assert!(
        seen.starts_with("GET /r?u=http://two.test/secret HTTP/1.1\r\n"),
        "{seen}"
    );
    // Absolute form naming the host of `Host` goes as origin form; another host is refused.
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let absolute = exchange(
        TcpStream::connect(address).expect("connect"),
        b"GET http://one.test/abs#frag HTTP/1.1\r\nHost: one.test\r\nConnection: close\r\n\r\n",
    );
    assert!(absolute.ends_with(b"\r\n\r\none"), "{absolute:?}");
    assert!(
        one.next_request()
            .starts_with("GET /abs HTTP/1.1\r\nHost: one.test\r\n")
    );
    let mismatch = exchange(
        TcpStream::connect(address).expect("connect"),
        b"GET http://two.test/ HTTP/1.1\r\nHost: one.test\r\n\r\n",
    );
    assert!(mismatch.starts_with(b"HTTP/1.1 400 "), "{mismatch:?}");
    // A child of a listed domain, and the domain itself.
    assert_eq!(get("www.two.test", "/", &[]), "two");
    assert_eq!(get("two.test", "/", &[]), "two");
    assert!(
        two.next_request()
            .starts_with("GET / HTTP/1.1\r\nHost: www.two.test:")
    );
    // Any other host: the default site. Its upstream keeps connections alive, so later
    // clients (each curl is a new client connection) reuse them from the site's pool.
    let before = origin.connections();
    for _ in 0..10 {
        assert_eq!(get("elsewhere.test", "/", &[]), "hello");
    }
    let opened = origin.connections() - before;
    assert!(
        opened <= 2,
        "10 clients opened {opened} upstream connections"
    );
    // A kept connection that the upstream closed with a 408 since carries no request: each
    // POST (never retried) gets its own answer, not the 408 meant for nobody.
    for round in 1..=3 {
        assert_eq!(
            get("stale.test", "/", &["-d", "x"]),
            "fresh",
            "round {round}"
        );
        g3proxy_tests::wait_until(Duration::from_secs(10), "the upstream's 408", || {
            (stale.closed.load(Ordering::Relaxed) >= round).then_some(())
        });
    }
    // A site whose upstream speaks TLS, its certificate checked against the upstream's name.
    assert_eq!(get("secure.test", "/", &[]), "hello over tls");
    // A request that already came through this proxy is a loop.
    let looped = curl_status(&[
        "-H",
        "Via: 1.1 edge, 1.1 gw1",
        "--resolve",
        &resolve("one.test", port),
        &format!("http://one.test:{port}/"),
    ]);
    assert_eq!(looped, "508");
    // Without no_early_error_reply, what is not a request is answered 400.
    let garbage = exchange(
        TcpStream::connect(address).expect("connect"),
        b"NOT A REQUEST\r\n\r\n",
    );
    assert!(garbage.starts_with(b"HTTP/1.1 400 "), "{garbage:?}");

    // The TLS front: the global certificate for localhost, the site's own for other.test.
    let front = group.port("front");
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    assert_eq!(
        curl(&["-s", "--cacert", ca, &format!("https://localhost:{front}/")]),
        "hello"
    );
    assert_eq!(
        curl(&[
            "-s",
            "--cacert",
            ca,
            "--resolve",
            &resolve("other.test", front),
            &format!("https://other.test:{front}/x"),
        ]),
        "one"
    );
    let seen = one.next_request();
    assert!(seen.contains("\r\nForwarded: for=\"127.0.0.1:"), "{seen}");
    assert!(seen.contains("\r\nVia: 1.1 other.test\r\n"), "{seen}");
    // no_early_error_reply: a host that is no site, or no request at all, gets only a close.
    let unknown = try_curl(&[
        "-s",
        "-k",
        "--resolve",
        &resolve("unknown.test", front),
        &format!("https://unknown.test:{front}/"),
    ]);
    assert_eq!(unknown.status.code(), Some(52), "{unknown:?}");
    // Once a request is for a site, its failures are answered all the same.
    let down = curl_status(&[
        "-k",
        "--resolve",
        &resolve("down.test", front),
        &format!("https://down.test:{front}/"),
    ]);
    assert_eq!(down, "521");
    let tcp = TcpStream::connect(("127.0.0.1", front)).expect("connect");
    let answer = exchange(certs.tls_client(tcp), b"NOT A REQUEST\r\n\r\n");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // Reloads: a new generation serves, and the upstream pools start again.
    for round in 0..2 {
        let output = group.ctl(&["reload"]);
        assert!(output.status.success(), "reload {round}: {output:?}");
        assert_eq!(get("elsewhere.test", "/", &[]), "hello");
        assert_eq!(get("www.two.test", "/", &[]), "two");
    }
    // A crashed worker: requests sent meanwhile wait in the supervisor's backlog and its
    // replacement answers them.
    for victim in group.worker_pids("current") {
        kill(victim, Signal::SIGKILL);
    }
    assert_eq!(get("elsewhere.test", "/", &[]), "hello");
    assert_eq!(get("secure.test", "/", &[]), "hello over tls");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The guide's http_rproxy examples, as written there: "Secure Reverse Proxy" loads (its
/// missing user group is a warning), the TLCP ones are refused plainly.
#[test]
fn the_guides_rproxy_examples_load() {
    let dir = std::env::temp_dir().join(format!("g3proxy-rproxy-guide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let check = |servers: &str| {
        let text = format!(
            "resolver:\n  - name: default\n    type: c-ares\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: default\nserver:\n{servers}"
        );
        let path = dir.join("main.yml");
        std::fs::write(&path, text).expect("write config");
        let output = Command::new(g3proxy_tests::bin("g3proxy"))
            .args(["-t", "-c"])
            .arg(&path)
            .output()
            .expect("g3proxy -t");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let secure = "- name: plain\n  escaper: default\n  user-group: default\n  type: http_rproxy\n  listen:\n    address: \"[::]:80\"\n  no_early_error_reply: true\n  hosts:\n  - exact_match: service1.example.net\n    upstream: 127.0.0.1:8081\n  - exact_match: service2.example.net\n    set_default: true\n    upstream: 127.0.0.1:8082\n";
    // Its group is not in the snippet: it loads as g3 does, with a group nobody logs in to.
    let (ok, stderr) = check(secure);
    assert!(
        ok && stderr.contains(
            "user group \"default\" does not exist: every user of this server is refused"
        ),
        "{stderr}"
    );
    let (ok, stderr) = check(&secure.replace("  user-group: default\n", ""));
    assert!(ok, "{stderr}");
    let tlcp = "- name: l7http\n  type: http_rproxy\n  escaper: default\n  listen: \"[::1]:80\"\n  hosts:\n  - set_default: true\n    upstream: \"127.0.0.1:443\"\n    tls_client:\n      protocol: tlcp\n      ca_certificate: /path/to/ca.cert\n    tls_name: target.host.domain\n";
    let (ok, stderr) = check(tlcp);
    assert!(!ok && stderr.contains("built without TLCP"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An upstream that wants a PROXY v1 line first on each connection, then answers requests
/// kept alive; it records, per connection, the client the line named and how many requests
/// came.
struct ProxyLineOrigin {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<(String, usize)>>>,
}

impl ProxyLineOrigin {
    fn start() -> ProxyLineOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() || !line.starts_with("PROXY ") {
                        return;
                    }
                    // `PROXY TCP4 <client ip> <server ip> <client port> <server port>`
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let client = format!("{}:{}", words[2], words[4]);
                    let index = {
                        let mut seen = seen.lock().unwrap();
                        seen.push((client, 0));
                        seen.len() - 1
                    };
                    let mut writer = stream;
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            head.push_str(&line);
                            if line == "\r\n" {
                                break;
                            }
                        }
                        seen.lock().unwrap()[index].1 += 1;
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
                        if writer.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ProxyLineOrigin { addr, connections }
    }
}

/// A site reached through an escaper that names the client in a PROXY header keeps no
/// connection for another client: each request arrives on a connection that named its own
/// client (a pool shared by clients would hand the next one a connection naming the first).
#[test]
fn connections_that_name_their_client_are_not_pooled() {
    let upstream = ProxyLineOrigin::start();
    let text = format!(
        "escaper:\n  - {{name: direct, type: direct_fixed, resolver: none, use_proxy_protocol: 1, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}\nserver:\n  - {{name: gw, type: http_rproxy, escaper: direct, listen: \"127.0.0.1:{{{{gw_port}}}}\", hosts: {{upstream: \"127.0.0.1:{}\"}}}}\n",
        upstream.addr.port()
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let gateway = ("127.0.0.1", group.port("gw"));
    let mut clients = Vec::new();
    for _ in 0..3 {
        // A client of its own each time: keep-alive, two requests, then it goes.
        let mut client = TcpStream::connect(gateway).expect("connect");
        let local = client.local_addr().unwrap().to_string();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for _ in 0..2 {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
                .expect("send");
            let mut answer = Vec::new();
            let mut chunk = [0u8; 512];
            while !answer.ends_with(b"hello") {
                let n = client.read(&mut chunk).expect("the answer");
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&chunk[..n]);
            }
        }
        clients.push(local);
    }
    // Each request on a connection of its own that named its own client (the site's
    // pool is the only place a reverse proxy keeps connections).
    let connections = upstream.connections.lock().unwrap().clone();
    let named: Vec<&String> = connections.iter().map(|(client, _)| client).collect();
    let expected: Vec<&String> = clients.iter().flat_map(|c| [c, c]).collect();
    assert_eq!(named, expected, "{connections:?}");
    assert!(
        connections.iter().all(|(_, requests)| *requests == 1),
        "{connections:?}"
    );
}

/// A user whose own settings shape the escaper's connections (here `tcp_remote_keepalive`)
/// neither takes a connection from the site's pool nor leaves one there; a user without
/// such settings shares it.
#[test]
fn connections_a_users_settings_shaped_stay_out_of_the_pool() {
    let origin = Origin::start("127.0.0.1");
    let text = format!(
        "escaper:\n  - {{name: direct, type: direct_fixed, resolver: none, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}\nuser_group:\n  - name: g\n    static_users:\n      - {{name: plain, token: null}}\n      - {{name: shaped, token: null, tcp_remote_keepalive: 30s}}\nserver:\n  - {{name: gw, type: http_rproxy, escaper: direct, user_group: g, listen: \"127.0.0.1:{{{{gw_port}}}}\", hosts: {{upstream: \"127.0.0.1:{}\"}}}}\n",
        origin.addr.port()
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let url = format!("http://127.0.0.1:{}/", group.port("gw"));
    // Each curl is a client connection of its own.
    let opened = |user: &str| {
        let before = origin.connections();
        for _ in 0..5 {
            assert_eq!(curl(&["-u", &format!("{user}:x"), &url]), "hello");
        }
        origin.connections() - before
    };
    assert_eq!(opened("shaped"), 5, "a connection each, none pooled");
    assert!(opened("plain") <= 2, "the pool serves the others");
    assert_eq!(opened("shaped"), 5, "nor does it take the others'");
}
