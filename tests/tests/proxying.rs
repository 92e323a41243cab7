//! Scenario: one supervisor serving `http_proxy` and `socks_proxy`; real clients (curl and
//! ureq) forward, tunnel and use SOCKS5 with IPv4, IPv6 and domain targets; malformed and
//! forbidden requests get the protocol's error answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use g3proxy_tests::{
    Echo, Group, Origin, curl, http_get, open_connect_tunnel, open_socks5_tunnel, roundtrip,
};

fn ureq_get(proxy: &str, url: &str) -> String {
    let proxy = ureq::Proxy::new(proxy).expect("proxy url");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(Some(proxy))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .expect("ureq request")
        .body_mut()
        .read_to_string()
        .expect("body")
}

#[test]
fn forward_connect_and_socks5_with_real_clients() {
    let origin = Origin::start("127.0.0.1");
    let origin6 = Origin::start("::1");
    let mut group = Group::new("basic");
    group.start();
    let http = format!("http://{}", group.http_proxy());
    let socks = format!("{}", group.socks_proxy());

    // Absolute-URI forward, with and without a request body, and keep-alive across two URLs.
    assert_eq!(curl(&["-x", &http, &origin.url("/")]), "hello");
    assert_eq!(
        curl(&[
            "-x",
            &http,
            "--data-binary",
            "0123456789",
            &origin.url("/post")
        ]),
        "got 10 bytes"
    );
    assert_eq!(
        curl(&[
            "-x",
            &http,
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "chunked!",
            &origin.url("/post")
        ]),
        "got 8 bytes"
    );
    assert_eq!(
        curl(&["-x", &http, &origin.url("/a"), &origin.url("/b")]),
        "hellohello"
    );
    // CONNECT, from curl and from ureq (which tunnels every proxied request).
    assert_eq!(curl(&["-p", "-x", &http, &origin.url("/")]), "hello");
    assert_eq!(ureq_get(&http, &origin.url("/")), "hello");
    // SOCKS5 with an IPv4 target, an IPv6 target and a domain target resolved by the proxy.
    assert_eq!(curl(&["--socks5", &socks, &origin.url("/")]), "hello");
    assert_eq!(curl(&["--socks5", &socks, &origin6.url("/")]), "hello");
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    assert_eq!(curl(&["--socks5-hostname", &socks, &by_name]), "hello");
    assert_eq!(
        ureq_get(&format!("socks5://{socks}"), &origin6.url("/")),
        "hello"
    );

    let status = String::from_utf8(group.ctl(&["server", "http", "status"]).stdout).unwrap();
    assert!(
        status.starts_with("online: true\nalive tasks: "),
        "{status}"
    );
    assert!(status.contains("total task: "), "{status}");
}

#[test]
fn tunnels_carry_bytes_both_ways() {
    let echo = Echo::start("127.0.0.1");
    let echo6 = Echo::start("::1");
    let mut group = Group::new("basic");
    group.start();
    let mut connect = open_connect_tunnel(group.http_proxy(), echo.addr);
    let mut socks = open_socks5_tunnel(group.socks_proxy(), echo6.addr);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for tunnel in [&mut connect, &mut socks] {
        roundtrip(tunnel, b"ping");
        let mut writer = tunnel.try_clone().unwrap();
        let payload = big.clone();
        let sender = std::thread::spawn(move || writer.write_all(&payload).unwrap());
        let mut back = vec![0u8; big.len()];
        tunnel.read_exact(&mut back).unwrap();
        sender.join().unwrap();
        assert!(back == big, "a megabyte came back changed");
    }
}

fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn bad_requests_get_the_protocols_error_answers() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let proxy = group.http_proxy();
    let check = |request: &[u8], status: &str| {
        let answer = raw_exchange(proxy, request);
        assert!(
            answer.starts_with(status),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(request)
        );
    };
    check(b"GARBAGE\r\n\r\n", "HTTP/1.1 400");
    check(b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400");
    check(b"GET ftp://x/ HTTP/1.1\r\n\r\n", "HTTP/1.1 400");
    check(b"POST http://127.0.0.1:1/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400");
    // The scenario's egress filter permits loopback only; nothing is sent anywhere else.
    check(b"GET http://192.0.2.1/ HTTP/1.1\r\n\r\n", "HTTP/1.1 403");
    check(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 403");
    let huge = format!(
        "GET http://{}/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        origin.addr,
        "a".repeat(70_000)
    );
    check(huge.as_bytes(), "HTTP/1.1 431");
    // A closed port on loopback: connection refused is 521, as g3proxy answers it.
    let closed = g3proxy_tests::free_port("127.0.0.1");
    check(
        format!("GET http://127.0.0.1:{closed}/ HTTP/1.1\r\n\r\n").as_bytes(),
        "HTTP/1.1 521",
    );
    // The proxy still serves after all that.
    assert_eq!(http_get(proxy, origin.addr).unwrap().1, b"hello");

    // SOCKS5: BIND is not supported (reply 7); a forbidden target is not allowed (reply 2).
    let socks_reply = |request: &[u8]| {
        let mut stream = TcpStream::connect(group.socks_proxy()).unwrap();
        stream.write_all(&[5, 1, 0]).unwrap();
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).unwrap();
        stream.write_all(request).unwrap();
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).unwrap();
        reply[1]
    };
    assert_eq!(socks_reply(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]), 7);
    assert_eq!(socks_reply(&[5, 1, 0, 1, 192, 0, 2, 1, 0, 80]), 2);
}

#[test]
fn c_ares_asks_the_configured_name_server() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("dns");
    let dns = g3proxy_tests::FakeDns::start(group.port("dns"), "origin.g3proxy.test");
    group.start();
    let (status, body) = raw_get(
        group.http_proxy(),
        &format!("origin.g3proxy.test:{}", origin.addr.port()),
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "hello");
    assert!(dns.queries() >= 1);
    // `runtime.thread_number` and `thread_name` shape the worker's runtime.
    let worker = group.worker_pids("current")[0];
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{worker}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    // Two runtime threads, plus any blocking-pool thread, which carries the name too.
    assert!(
        names.iter().filter(|n| *n == "g3w").count() >= 2,
        "{names:?}"
    );
    let (status, _) = raw_get(
        group.http_proxy(),
        &format!("missing.g3proxy.test:{}", origin.addr.port()),
    );
    assert!(
        status.starts_with("HTTP/1.1 530"),
        "an unknown name is g3proxy's 530: {status}"
    );
}

fn raw_get(proxy: SocketAddr, authority: &str) -> (String, String) {
    let answer = raw_exchange(
        proxy,
        format!(
            "GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let mut stream = TcpStream::connect(group.http_proxy()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST http://{}/post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        origin.addr
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    stream
        .read_exact(&mut interim)
        .expect("an interim answer before the body is sent");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"12345").unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"got 5 bytes") {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn socks4_and_socks4a_with_curl() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let socks = group.socks_proxy().to_string();
    assert_eq!(curl(&["--socks4", &socks, &origin.url("/")]), "hello");
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    assert_eq!(curl(&["--socks4a", &socks, &by_name]), "hello");
    // BIND is refused with the SOCKS4 rejection code.
    let mut stream = TcpStream::connect(group.socks_proxy()).unwrap();
    stream
        .write_all(b"\x04\x02\x00\x50\x7f\x00\x00\x01\x00")
        .unwrap();
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 91);
}
