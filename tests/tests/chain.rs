//! Scenario: proxy chaining and routing. A `route_upstream` escaper sends each target its own
//! way: loopback origins direct; 127.0.0.2 through a next-hop HTTP proxy that is another
//! g3proxy group (A's own egress filter forbids that address, so an answer proves the chain);
//! named test hosts to next hops that record what reached them; one host to an escaper the
//! config lacks. What must hold on the wire: absolute form toward a next hop, our credentials
//! for it and never the client's, and the target's first bytes after a `CONNECT` answer kept.

use std::io::{Read, Write};

use g3proxy_tests::{
    Echo, Group, Origin, RecordingOrigin, curl, curl_status, open_connect_tunnel,
    open_socks5_tunnel, roundtrip, try_curl,
};

const FORWARD_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nchained";
const AUTH_ANSWER: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"next\"\r\nContent-Length: 0\r\n\r\n";
/// A next hop that accepts the CONNECT and, in the same write, passes on the target's answer.
const TUNNEL_ANSWER: &[u8] = b"HTTP/1.1 200 Connection established\r\nX-Next: hop\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nbanner";

#[test]
fn routes_pick_direct_a_next_hop_proxy_or_deny() {
    let mut next = Group::new("basic");
    next.start();
    let recorder = RecordingOrigin::start(FORWARD_ANSWER, false);
    let tunnel_recorder = RecordingOrigin::start(TUNNEL_ANSWER, false);
    let refusing = RecordingOrigin::start(AUTH_ANSWER, false);
    let mut group = Group::with_ports(
        "chain",
        &[
            ("next", next.port("http")),
            ("recorder", recorder.addr.port()),
            ("tunnel_recorder", tunnel_recorder.addr.port()),
            ("refusing", refusing.addr.port()),
        ],
    );
    group.start();
    let http = format!("http://{}", group.http_proxy());
    let socks = format!("127.0.0.1:{}", group.port("socks"));

    // Default route: direct.
    let local = Origin::start("127.0.0.1");
    assert_eq!(curl(&["-x", &http, &local.url("/")]), "hello");

    // 127.0.0.2 by subnet: through the other group, by forward (absolute form to it), by
    // CONNECT and by SOCKS5; our own direct escaper may not reach that address.
    let far = Origin::start("127.0.0.2");
    assert_eq!(curl(&["-x", &http, &far.url("/")]), "hello");
    // Two requests on one client connection: the connection to the next hop is kept.
    assert_eq!(
        curl(&["-x", &http, &far.url("/a"), &far.url("/b")]),
        "hellohello"
    );
    assert_eq!(curl(&["-p", "-x", &http, &far.url("/")]), "hello");
    assert_eq!(curl(&["--socks5", &socks, &far.url("/")]), "hello");
    let far_echo = Echo::start("127.0.0.2");
    let mut tunnel = open_socks5_tunnel(socks.parse().expect("socks address"), far_echo.addr);
    roundtrip(&mut tunnel, b"through two proxies");
    let unrouted = Origin::start("127.0.0.3");
    assert_eq!(status(&http, &unrouted.url("/")), "403");

    // Exact match: the request reaches the next hop in absolute form with our credentials;
    // the client's own Proxy-Authorization for us stops here.
    assert_eq!(
        curl(&[
            "-x",
            &http,
            "-U",
            "client:client-secret",
            "http://recorded.test/x?y=1"
        ]),
        "chained"
    );
    let seen = recorder.next_request();
    assert!(
        seen.starts_with("GET http://recorded.test/x?y=1 HTTP/1.1\r\nHost: recorded.test\r\n")
            && seen.contains("\r\nProxy-Authorization: Basic Y2hhaW4tdXNlcjpjaGFpbi1zZWNyZXQ=\r\n"),
        "{seen}"
    );
    assert!(
        !seen.contains("Y2xpZW50"),
        "client credentials passed on: {seen}"
    );

    // Child match (a host under example.test): a CONNECT to the next hop, and what the target
    // sent in the same segment as the next hop's 200 reaches the client.
    assert_eq!(
        curl(&["-p", "-x", &http, "http://www.example.test/"]),
        "banner"
    );
    let seen = tunnel_recorder.next_request();
    assert!(
        seen.starts_with(
            "CONNECT www.example.test:80 HTTP/1.1\r\nHost: www.example.test:80\r\nProxy-Authorization: Basic Y2hhaW4tdXNlcjpjaGFpbi1zZWNyZXQ=\r\n"
        ),
        "{seen}"
    );

    // https forward left to a next hop that does TLS itself: `GET https://…` goes to it as
    // it is (curl would tunnel, so a raw client sends it).
    let mut client = std::net::TcpStream::connect(group.http_proxy()).expect("connect to proxy");
    client
        .write_all(
            b"GET https://secure.test/s HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n",
        )
        .expect("send");
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    assert!(answer.ends_with("chained"), "{answer}");
    let seen = recorder.next_request();
    assert!(
        seen.starts_with("GET https://secure.test/s HTTP/1.1\r\nHost: secure.test\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("Proxy-Authorization"), "{seen}");

    // A next hop that wants credentials we lack: a 502 for the client, never the next hop's
    // challenge (the client would answer it with credentials meant for us).
    let refused = try_curl(&["-s", "-D", "-", "-x", &http, "http://auth.test/"]);
    let head = String::from_utf8_lossy(&refused.stdout);
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("proxy-authenticate"),
        "{head}"
    );
    assert_eq!(status(&http, "http://auth.test/"), "502");
    let tunnel = try_curl(&[
        "-s",
        "-p",
        "-o",
        "/dev/null",
        "-w",
        "%{http_connect}",
        "-x",
        &http,
        "http://auth.test/",
    ]);
    assert_eq!(String::from_utf8_lossy(&tunnel.stdout), "502");

    // An escaper the config lacks: denied as a policy, for HTTP and SOCKS alike.
    assert_eq!(status(&http, "http://denied.test/"), "403");
    let denied = try_curl(&["--socks5-hostname", &socks, "http://denied.test/"]);
    assert!(!denied.status.success());
    // A dummy_deny escaper refuses the same way.
    assert_eq!(status(&http, "http://walled.test/"), "403");
    let denied = try_curl(&["--socks5-hostname", &socks, "http://walled.test/"]);
    assert!(!denied.status.success());

    // `g3proxy -t` says which reference is missing, and still loads the config.
    let checked = std::process::Command::new(g3proxy_tests::bin("g3proxy"))
        .args(["-t", "-c"])
        .arg(&group.config)
        .output()
        .expect("g3proxy -t");
    assert!(checked.status.success());
    let warnings = String::from_utf8_lossy(&checked.stderr);
    assert!(
        warnings.contains("\"nowhere\" does not exist"),
        "{warnings}"
    );
}

/// The status code curl gets for `url` through `proxy`.
fn status(proxy: &str, url: &str) -> String {
    curl_status(&["-x", proxy, url])
}

/// route_failover: a primary that refuses hands over to the standby at once, and one that
/// never answers is raced by the standby after `fallback_delay`; either way the tunnel flows.
#[test]
fn failover_takes_the_standby_when_the_primary_fails_or_stalls() {
    let echo = Echo::start("127.0.0.1");
    // A next hop that accepts and then says nothing, holding what it accepted.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().flatten().take(8).collect();
        std::thread::park();
        drop(held);
    });
    let config = "\
resolver:
  - {name: default, type: c-ares}
escaper:
  - name: direct
    type: direct_fixed
    resolver: default
    egress_network_filter: {default: forbid, permit: [127.0.0.1/32]}
  - name: silent_hop
    type: proxy_http
    proxy_addr: \"127.0.0.1:{{silent_port}}\"
    # Longer than the client waits: only the race reaches the standby in time.
    peer_negotiation_timeout: 60s
  - name: dead_hop
    type: proxy_http
    proxy_addr: \"127.0.0.1:{{dead_hop_port}}\"
  - name: stalled
    type: route_failover
    primary: silent_hop
    standby: direct
    fallback_delay: 200ms
  - name: refused
    type: failover
    primary_next: dead_hop
    standby_next: direct
server:
  - {name: stalled, type: http_proxy, escaper: stalled, listen: \"127.0.0.1:{{stalled_port}}\"}
  - {name: refused, type: http_proxy, escaper: refused, listen: \"127.0.0.1:{{refused_port}}\"}
";
    let mut group = Group::from_text(
        config,
        &std::env::temp_dir(),
        &[
            ("silent", silent_port),
            ("dead_hop", g3proxy_tests::free_port("127.0.0.1")),
        ],
    );
    group.start();
    for server in ["refused", "stalled"] {
        let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], group.port(server)));
        let mut tunnel = open_connect_tunnel(proxy, echo.addr);
        roundtrip(&mut tunnel, b"through the standby");
    }
}
