//! Scenario: a user's `explicit_sites` and the per-user connection keys, through a real
//! http_proxy, a real unbound serving a name with an IPv4 and an IPv6 address, and StatsD
//! metrics into the test's receiver:
//! - requests to a site with `emit_stats` count under `user.site.<id>.*` (requests,
//!   connections, bytes) as well as under the user's own series; requests elsewhere do not;
//! - a site's `resolve_strategy` (IPv6 only) sends the user's requests for its names to the
//!   IPv6 address, where a blackhole takes them, and the user's `tcp_connect` bounds the
//!   escaper's 30 s connect timeout to 1 s; another user without the site reaches the name
//!   over IPv4;
//! - a user's `resolve_strategy` applies to all its targets;
//! - a site's `http_rsp_header_recv_timeout` overrides the server's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use g3proxy_tests::{
    Certs, Echo, Group, Origin, StatsdReceiver, Unbound, blackhole_v6, curl, curl_status,
    roundtrip, wait_until,
};

#[test]
fn sites_count_apart_and_steer_resolution_and_timeouts() {
    let origin = Origin::start("127.0.0.1");
    let port = origin.addr.port();
    let _blackhole = blackhole_v6(port);
    // An origin that takes requests and never answers.
    let silent = TcpListener::bind("127.0.0.2:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in silent.incoming().flatten() {
            let mut buffer = [0; 1024];
            let _ = stream.read(&mut buffer);
            held.push(stream);
        }
    });
    let statsd = StatsdReceiver::start();
    let certs_dir =
        std::env::temp_dir().join(format!("g3proxy-sites-certs-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let unbound = Unbound::start(
        &certs,
        &[
            "dual.test. 300 IN A 127.0.0.1",
            "dual.test. 300 IN AAAA ::1",
        ],
    );
    let text = format!(
        "stat:
  target: {{udp: 127.0.0.1:{statsd}}}
  emit_interval: 100ms
resolver:
  - {{name: dns, type: c-ares, server: 127.0.0.1:{dns}}}
escaper:
  - name: direct
    type: direct_fixed
    resolver: dns
    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8, ::1/128]}}
user_group:
  - name: g
    static_users:
      - name: alice
        token: null
        tcp_connect: {{max_retry: 0, each_timeout: 1s}}
        explicit_sites:
          - {{id: loop, exact_match: 127.0.0.1, emit_stats: true}}
          - {{id: dual, child_match: test, resolve_strategy: IPv6Only}}
          - {{id: slow, exact_match: 127.0.0.2, http_rsp_header_recv_timeout: 1s}}
      - name: bob
        token: null
      - name: carol
        token: null
        resolve_strategy: {{query: ipv6only}}
        tcp_connect: {{each_timeout: 1s}}
server:
  - name: http
    type: http_proxy
    escaper: direct
    user_group: g
    listen: \"127.0.0.1:{{{{http_port}}}}\"
",
        statsd = statsd.port,
        dns = unbound.port,
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let by_address = origin.url("/");
    let by_name = format!("http://dual.test:{port}/");

    // Three requests to the site `loop` on connections of their own, two more on one
    // connection (the second reuses the first's upstream connection), one to a name that is
    // in no counted site.
    for _ in 0..3 {
        assert_eq!(curl(&["-x", &proxy, "-U", "alice:x", &by_address]), "hello");
    }
    assert_eq!(
        curl(&["-x", &proxy, "-U", "alice:x", &by_address, &by_address]),
        "hellohello"
    );
    assert_eq!(curl(&["-x", &proxy, "-U", "bob:x", &by_name]), "hello");
    let alice = [
        "user_group:g",
        "user:alice",
        "user_type:Static",
        "server:http",
    ];
    let forwarded: Vec<&str> = alice
        .iter()
        .copied()
        .chain(["request:http_forward"])
        .collect();
    wait_until(Duration::from_secs(10), "the site's counts", || {
        (statsd.total("g3proxy.user.site.loop.request.total", &forwarded) == 5
            && statsd.total("g3proxy.user.site.loop.request.ready", &forwarded) == 5
            && statsd.total("g3proxy.user.site.loop.request.reuse", &forwarded) == 1
            && statsd.total("g3proxy.user.site.loop.connection.total", &alice) == 4
            && statsd.total("g3proxy.user.site.loop.traffic.out.bytes", &forwarded) > 0
            && statsd.total("g3proxy.user.request.total", &forwarded) == 5
            && statsd.total("g3proxy.user.request.reuse", &forwarded) == 1)
            .then_some(())
    });
    let alive = statsd.matching("g3proxy.user.site.loop.request.alive", "g", &forwarded);
    assert_eq!(alive.last().map(|(v, _)| *v), Some(0), "{alive:?}");
    // A connection of alice's held open counts in the gauge until it closes.
    let mut held = TcpStream::connect(("127.0.0.1", group.port("http"))).unwrap();
    let request = format!(
        "GET {by_address} HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Basic YWxpY2U6eA==\r\n\r\n",
        origin.addr
    );
    held.write_all(request.as_bytes()).unwrap();
    let mut answer = [0u8; 1024];
    let mut got = 0;
    while !answer[..got].ends_with(b"hello") {
        let read = held.read(&mut answer[got..]).unwrap();
        assert!(read > 0, "{:?}", String::from_utf8_lossy(&answer[..got]));
        got += read;
    }
    let gauge = |value: u64| {
        let open = statsd.matching("g3proxy.user.l7.connection.alive", "g", &alice);
        (open.last().map(|(v, _)| *v) == Some(value)).then_some(())
    };
    wait_until(Duration::from_secs(10), "alice's connection open", || {
        gauge(1)
    });
    drop(held);
    wait_until(
        Duration::from_secs(10),
        "no connection of alice open",
        || gauge(0),
    );
    // The site's ready times: min, max, mean and g3's default quantiles, in nanoseconds.
    let durations = statsd.matching("g3proxy.user.site.loop.task.ready.duration", "g", &alice);
    for quantile in ["min", "max", "mean", "0.50", "0.99"] {
        let tag = format!("quantile:{quantile}");
        assert!(
            durations.iter().any(|(_, tags)| tags.contains(&tag)),
            "{quantile}: {durations:?}"
        );
    }
    // The same traffic, under the site and under the user.
    assert_eq!(
        statsd.total("g3proxy.user.site.loop.traffic.out.bytes", &forwarded),
        statsd.total("g3proxy.user.traffic.out.bytes", &forwarded)
    );

    // The site `dual` resolves its names to IPv6 only: the blackhole holds the connection
    // until alice's own 1 s connect timeout (the escaper's is 30 s).
    let started = Instant::now();
    let status = curl_status(&["-x", &proxy, "-U", "alice:x", "--max-time", "20", &by_name]);
    assert_ne!(status, "200");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the user's tcp_connect bound the escaper's: {:?}",
        started.elapsed()
    );
    // bob has no such site: IPv4 first, the origin answers (above). carol's own strategy
    // is IPv6 only, for every target.
    assert_ne!(
        curl_status(&["-x", &proxy, "-U", "carol:x", "--max-time", "20", &by_name]),
        "200"
    );
    assert_eq!(curl(&["-x", &proxy, "-U", "bob:x", &by_name]), "hello");
    // The site `slow` waits 1 s for a response head; bob waits the server's (a minute),
    // and curl gives up first.
    let silent_url = format!("http://127.0.0.2:{silent_port}/");
    let status = curl_status(&[
        "-x",
        &proxy,
        "-U",
        "alice:x",
        "--max-time",
        "20",
        &silent_url,
    ]);
    assert_eq!(status, "504", "the site's response-head timeout");
    let status = curl_status(&["-x", &proxy, "-U", "bob:x", "--max-time", "3", &silent_url]);
    assert_eq!(
        status, "curl exit Some(28)",
        "the server's response-head timeout is longer"
    );

    drop(group);
    let _ = std::fs::remove_dir_all(certs_dir);
}

/// A user's `http_upstream_keepalive: false` keeps each of its forwarded requests on an
/// upstream connection of its own (another user's reuse one); a user's `log_rate_limit`
/// drops its task log events past the quota and counts them as `log_skipped`; its
/// `tcp_remote_keepalive` and `tcp_remote_misc_opts` reach its upstream sockets (`ss`).
#[test]
fn per_user_upstream_reuse_and_log_quota() {
    let origin = Origin::start("127.0.0.1");
    let statsd = StatsdReceiver::start();
    let text = format!(
        "stat:
  target: {{udp: 127.0.0.1:{statsd}}}
  emit_interval: 100ms
log:
  task: stdout
escaper:
  - name: direct
    type: direct_fixed
    resolver: none
    tcp_keepalive: 120s
    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}
user_group:
  - name: g
    static_users:
      - name: reuse
        token: null
      - name: fresh
        token: null
        http_upstream_keepalive: false
        tcp_remote_keepalive: {{idle_time: 30s, probe_count: 3}}
        tcp_remote_misc_opts: {{no_delay: true, ttl: 16, mss: 1200}}
      - name: quiet
        token: null
        log_rate_limit: 2/h
server:
  - name: http
    type: http_proxy
    escaper: direct
    user_group: g
    listen: \"127.0.0.1:{{{{http_port}}}}\"
",
        statsd = statsd.port,
    );
    let (group, stdout) = Group::start_with_stdout(&text);
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let url = origin.url("/");

    // Two requests on one client connection each: one upstream connection for `reuse`,
    // two for `fresh`.
    assert_eq!(
        curl(&["-x", &proxy, "-U", "reuse:x", &url, &url]),
        "hellohello"
    );
    assert_eq!(origin.connections(), 1);
    assert_eq!(
        curl(&["-x", &proxy, "-U", "fresh:x", &url, &url]),
        "hellohello"
    );
    assert_eq!(origin.connections(), 3);

    // Five requests of `quiet`: two events written, three dropped.
    for _ in 0..5 {
        assert_eq!(curl(&["-x", &proxy, "-U", "quiet:x", &url]), "hello");
    }
    wait_until(
        Duration::from_secs(10),
        "the skipped events counted",
        || {
            let quiet = ["user:quiet", "server:http"];
            (statsd.total("g3proxy.user.forbidden.log_skipped", &quiet) == 3).then_some(())
        },
    );
    // A tunnel's one event, as it ends, is over the quota too.
    let echo = Echo::start("127.0.0.1");
    let mut tunnel = open_tunnel(group.port("http"), echo.addr, "cXVpZXQ6eA==");
    roundtrip(&mut tunnel, b"ping");
    drop(tunnel);
    wait_until(
        Duration::from_secs(10),
        "the tunnel's event skipped",
        || {
            let quiet = ["user:quiet", "server:http"];
            (statsd.total("g3proxy.user.forbidden.log_skipped", &quiet) == 4).then_some(())
        },
    );
    // One more event, of another user, written after them: once it is out, so is every
    // event of quiet's that was going to be.
    assert_eq!(curl(&["-x", &proxy, "-U", "reuse:x", &url]), "hello");
    let written = |user: &str| {
        let lines = stdout.lock().unwrap();
        let user = format!("user: {user},");
        lines.iter().filter(|l| l.contains(&user)).count()
    };
    wait_until(Duration::from_secs(10), "the last event written", || {
        (written("reuse") == 3).then_some(())
    });
    assert_eq!(written("quiet"), 2, "task events of user quiet written");

    // `fresh`'s socket options on its upstream connection, as the kernel reports them:
    // keepalive after its 30 s (shorter than the escaper's 120 s), its MSS.
    let echo = Echo::start("127.0.0.1");
    let mut tunnel = open_tunnel(group.port("http"), echo.addr, "ZnJlc2g6eA==");
    roundtrip(&mut tunnel, b"ping");
    let filter = format!("( dport = :{} )", echo.addr.port());
    let ss = std::process::Command::new("ss")
        .args(["-tino", "state", "established", &filter])
        .output()
        .expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout);
    let keepalive = ss
        .split("timer:(keepalive,")
        .nth(1)
        .and_then(|rest| rest.split_once("sec"))
        .and_then(|(secs, _)| secs.parse::<u32>().ok());
    assert!(keepalive.is_some_and(|secs| secs <= 30), "{ss}");
    // The MSS it sent, less the timestamp option the kernel counts in.
    let mss = ss
        .split(" mss:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(mss.is_some_and(|mss| (1100..=1200).contains(&mss)), "{ss}");
    drop(tunnel);
}

/// A `CONNECT` tunnel to `target` through the HTTP proxy at `port`, logged in with
/// `basic` (base64 of `user:password`).
fn open_tunnel(port: u16, target: std::net::SocketAddr, basic: &str) -> TcpStream {
    let mut tunnel = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let connect = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
    );
    tunnel.write_all(connect.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tunnel.read(&mut byte).unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    tunnel
}

/// A SOCKS UDP association counts for the site of its first datagram's target, as g3
/// counts its initial peer: the request (alive while it lasts), and its datagrams and bytes
/// both ways, under the site and under the user, and the upstream traffic under
/// `transport: udp`.
#[test]
fn a_udp_association_counts_for_its_first_targets_site() {
    use g3proxy_tests::socks_udp::{associate, client_socket, exchange};

    let statsd = StatsdReceiver::start();
    let echo = g3proxy_tests::UdpEcho::start();
    let text = format!(
        "stat:
  target: {{udp: 127.0.0.1:{statsd}}}
  emit_interval: 100ms
escaper:
  - {{name: direct, type: direct_fixed, resolver: none, egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}}}
user_group:
  - name: g
    anonymous_user:
      name: anon
      explicit_sites:
        - {{id: loop-udp, subnet_match: 127.0.0.0/8, emit_stats: true}}
server:
  - {{name: socks, type: socks_proxy, escaper: direct, user_group: g, listen: \"127.0.0.1:{{{{socks_port}}}}\"}}
",
        statsd = statsd.port,
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("127.0.0.1:{}", group.port("socks"))
        .parse()
        .unwrap();
    let client = client_socket();
    let (control, relay) = associate(proxy, &client);
    for _ in 0..3 {
        let (_, payload) = exchange(&client, relay, echo.addr, b"ping").expect("echoed");
        assert_eq!(payload, b"ping");
    }
    let anon = [
        "user_group:g",
        "user:anon",
        "user_type:Anonymous",
        "request:socks_udp_associate",
    ];
    let site_alive = || {
        let alive = statsd.matching("g3proxy.user.site.loop-udp.request.alive", "g", &anon);
        alive.last().map(|(value, _)| *value)
    };
    wait_until(
        Duration::from_secs(10),
        "the site's live association",
        || (site_alive() == Some(1)).then_some(()),
    );
    drop(control);
    wait_until(Duration::from_secs(10), "the association's end", || {
        (site_alive() == Some(0)).then_some(())
    });
    wait_until(Duration::from_secs(10), "the association's counts", || {
        let site = |name: &str| statsd.total(&format!("g3proxy.user.site.loop-udp.{name}"), &anon);
        let user = |name: &str| statsd.total(&format!("g3proxy.user.{name}"), &anon);
        (site("request.total") == 1
            && site("traffic.in.packets") == 3
            && site("traffic.out.packets") == 3
            && site("traffic.in.bytes") == user("traffic.in.bytes")
            && user("traffic.in.packets") == 3)
            .then_some(())
    });
    let upstream = ["user:anon", "escaper:direct", "transport:udp"];
    wait_until(Duration::from_secs(10), "the upstream datagrams", || {
        (statsd.total("g3proxy.user.upstream.traffic.out.packets", &upstream) == 3).then_some(())
    });
}
