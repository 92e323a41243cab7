//! Scenario: port entries in front of other servers. curl's `--haproxy-protocol` (PROXY v1)
//! and a PROXY v2 header from the test reach an HTTP proxy whose ingress filter judges the
//! reported address; HTTP and SOCKS5 clients share one `intelli_proxy` port; a speed limit on
//! a server holds within loose bounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use g3proxy_proto::proxy_protocol;
use g3proxy_tests::{Echo, Group, Origin, curl, open_socks5_tunnel, try_curl};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn proxy_protocol_ports_report_the_client_to_the_ingress_filter() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("ports");
    group.start();

    // v1 from curl: the reported client is curl's own loopback address, which is permitted.
    let body = curl(&[
        "--haproxy-protocol",
        "-x",
        &format!("http://127.0.0.1:{}", group.port("pp1")),
        &origin.url("/"),
    ]);
    assert_eq!(body, "hello");
    // Without the header the v1 port drops the connection.
    let output = try_curl(&[
        "-x",
        &format!("http://127.0.0.1:{}", group.port("pp1")),
        &origin.url("/"),
    ]);
    assert!(!output.status.success());

    // v2 from the test: the filter sees the reported source, not the socket's.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/"),
        origin.addr
    );
    let through_v2 = |source: &str| {
        let mut stream = TcpStream::connect(local(group.port("pp2"))).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut header = Vec::new();
        proxy_protocol::encode_v2(
            source.parse().unwrap(),
            local(group.port("pp2")),
            &mut header,
        );
        stream.write_all(&header).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(through_v2("192.0.2.1:4000").ends_with("hello"), "permitted");
    assert_eq!(through_v2("192.0.2.2:4000"), "", "refused by the filter");
}

#[test]
fn http_and_socks5_share_an_intelli_proxy_port() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("ports");
    group.start();
    let port = group.port("intelli");
    let http = curl(&["-x", &format!("http://127.0.0.1:{port}"), &origin.url("/")]);
    assert_eq!(http, "hello");
    let socks = curl(&[
        "--socks5-hostname",
        &format!("127.0.0.1:{port}"),
        &origin.url("/"),
    ]);
    assert_eq!(socks, "hello");
}

#[test]
fn a_server_speed_limit_holds_within_loose_bounds() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("ports");
    group.start();
    // 1M per 1024 ms each way, the first slice at once: 3 MB up and back takes about two
    // seconds, not milliseconds.
    let mut tunnel = open_socks5_tunnel(local(group.port("limited")), echo.addr);
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
