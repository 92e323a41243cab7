//! Scenario: `direct_fixed` as the guide describes it.
//! - Happy Eyeballs: a name with an IPv6 address that blackholes (a listener whose accept
//!   queue is full drops every SYN: a blackhole on loopback, no firewall rule needed) and an
//!   IPv4 one that serves; with IPv6 preferred, the request is served through IPv4 once the
//!   connection attempt delay passed, long before the IPv6 attempt's own timeout;
//! - `use_proxy_protocol`: the target reads a PROXY header with the client's addresses first;
//! - the egress filter refuses a forbidden address in its IPv4-compatible and NAT64
//!   spellings;
//! - `tcp_sock_speed_limit` toward the target holds within loose bounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use g3proxy_tests::{
    Certs, Echo, Group, Origin, RecordingOrigin, Unbound, blackhole_v6, curl, curl_status,
};

#[test]
fn happy_eyeballs_falls_back_to_the_family_that_answers() {
    let origin = Origin::start("127.0.0.1");
    let port = origin.addr.port();
    let _blackhole = blackhole_v6(port);
    // The blackhole holds: a direct attempt to it does not connect.
    let probe = TcpStream::connect_timeout(
        &format!("[::1]:{port}").parse().unwrap(),
        Duration::from_millis(300),
    );
    assert!(probe.is_err(), "the IPv6 address should blackhole");

    let certs_dir = std::env::temp_dir().join(format!("g3proxy-he-certs-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let unbound = Unbound::start(
        &certs,
        &[
            "dual.test. 300 IN A 127.0.0.1",
            "dual.test. 300 IN AAAA ::1",
        ],
    );
    let text = format!(
        "resolver:\n  - name: dns\n    type: c-ares\n    server: 127.0.0.1:{dns}\nescaper:\n  - name: v6first\n    type: direct_fixed\n    resolver: dns\n    resolve_strategy: IPv6First\n    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8, ::1/128]}}\n    happy_eyeballs: {{connection_attempt_delay: 200ms}}\nserver:\n  - name: http\n    type: http_proxy\n    escaper: v6first\n    listen: \"127.0.0.1:{{{{http_port}}}}\"\n",
        dns = unbound.port,
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let url = format!("http://dual.test:{port}/");
    // Without Happy Eyeballs the IPv6 attempt would take tcp_connect.each_timeout (30 s).
    assert_eq!(curl(&["-x", &proxy, "--max-time", "10", &url]), "hello");
    drop(group);
    let _ = std::fs::remove_dir_all(certs_dir);
}

#[test]
fn proxy_protocol_egress_filter_and_speed_limit_toward_the_target() {
    let recording = RecordingOrigin::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        false,
    );
    let echo = Echo::start("127.0.0.1");
    let text = "escaper:\n  - name: pp\n    type: direct_fixed\n    resolver: none\n    use_proxy_protocol: 1\n    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}\n  - name: strict\n    type: direct_fixed\n    resolver: none\n    egress_network_filter: {default: permit}\n  - name: slow\n    type: direct_fixed\n    resolver: none\n    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}\n    tcp_sock_speed_limit: 1M\n    tcp_keepalive: 30s\n    tcp_misc_opts: {no_delay: true}\nserver:\n  - name: pp\n    type: http_proxy\n    escaper: pp\n    listen: \"127.0.0.1:{{pp_port}}\"\n  - name: strict\n    type: http_proxy\n    escaper: strict\n    listen: \"127.0.0.1:{{strict_port}}\"\n  - name: slow\n    type: http_proxy\n    escaper: slow\n    listen: \"127.0.0.1:{{slow_port}}\"\n";
    let mut group = Group::from_text(text, &std::env::temp_dir(), &[]);
    group.start();

    // The target hears of the client first.
    let proxy = format!("http://127.0.0.1:{}", group.port("pp"));
    let url = format!("http://{}/", recording.addr);
    assert_eq!(curl(&["-x", &proxy, &url]), "ok");
    let request = recording.next_request();
    let first = request.lines().next().unwrap_or_default();
    let proxy_port = group.port("pp").to_string();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields.len(), 6, "{first:?}");
    assert_eq!(
        &fields[..4],
        ["PROXY", "TCP4", "127.0.0.1", "127.0.0.1"],
        "{first:?}"
    );
    assert_eq!(
        fields[5], proxy_port,
        "the address the client came in at: {first:?}"
    );
    assert!(request.contains("GET / HTTP/1.1"), "{request}");

    // Loopback, spelt as IPv6 that carries it, is still loopback.
    let strict = format!("http://127.0.0.1:{}", group.port("strict"));
    for spelling in ["[::127.0.0.1]", "[64:ff9b::7f00:1]"] {
        let url = format!("http://{spelling}:{}/", recording.addr.port());
        assert_eq!(curl_status(&["-x", &strict, &url]), "403", "{spelling}");
    }

    // 1 MB per 1024 ms each way toward the target: 3 MB up and back takes about two
    // seconds, not milliseconds.
    let slow: SocketAddr = format!("127.0.0.1:{}", group.port("slow")).parse().unwrap();
    let mut tunnel = g3proxy_tests::open_connect_tunnel(slow, echo.addr);
    tunnel
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let payload = vec![7u8; 3_000_000];
    let started = Instant::now();
    let mut writer = tunnel.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&payload).unwrap());
    let mut received = vec![0u8; 3_000_000];
    tunnel.read_exact(&mut received).unwrap();
    sender.join().unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed <= Duration::from_secs(20),
        "3 MB at 1 MB/s took {elapsed:?}"
    );
}
