//! Scenario: every `proxy_*` escaper against a second group of ours as its next hop. The
//! front group's HTTP proxies each leave through one escaper: `proxy_http` and `proxy_https`
//! to the next group's HTTP proxy (plain, and under TLS with the test CA), `proxy_socks5` and
//! `proxy_socks5s` to its SOCKS proxy (plain, and behind a `plain_tls_port`), and a
//! `proxy_http` with `use_proxy_protocol: 2` to a port that wants a PROXY v2 header. The next group
//! wants a login (`open` with any password, through Basic and RFC 1929), which only the
//! escapers have; its own egress reaches the origin. Checked: forwarded requests and `CONNECT`
//! tunnels arrive, a target name travels to the next hop to be resolved there, and a next hop
//! that refuses our login is the client's 502. UDP through both SOCKS5 escapers, in both
//! relay modes. And `divert_tcp`'s PROXY v2 header with g3's
//! TLVs, as a next hop reads it.

use g3proxy_tests::{Certs, Group, Origin, curl, curl_status};

const NEXT: &str = "resolver:
  - {name: default, type: c-ares}
escaper:
  - name: default
    type: direct_fixed
    resolver: default
    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}
user_group:
  - name: hops
    static_users:
      - name: hop
        token:
          salt: 113323bdab6fd2cc
          md5: 5c81f2becadde7fa5fde9026652ccc84
          sha1: ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96
server:
  - {name: http, type: http_proxy, escaper: default, user_group: hops, listen: \"127.0.0.1:{{http_port}}\"}
  - name: https
    type: http_proxy
    escaper: default
    user_group: hops
    listen: \"127.0.0.1:{{https_port}}\"
    tls_server: {certificate: server.pem, private_key: server.key}
  - name: socks
    type: socks_proxy
    escaper: default
    user_group: hops
    use_udp_associate: true
    listen: \"127.0.0.1:{{socks_port}}\"
  - name: socks_tls
    type: plain_tls_port
    listen: \"127.0.0.1:{{socks_tls_port}}\"
    server: socks
    tls_server: {certificate: server.pem, private_key: server.key}
  - {name: pp, type: plain_tcp_port, listen: \"127.0.0.1:{{pp_port}}\", server: http, proxy_protocol: v2}
";

#[test]
fn each_proxy_escaper_chains_through_a_second_group() {
    let origin = Origin::start("127.0.0.1");
    let mut next = Group::from_text(NEXT, &std::env::temp_dir(), &[]);
    let certs = Certs::make(&next.dir);
    next.start();
    // The guide's test vector: user `hop`, password "toor".
    let login = "proxy_username: hop\n    proxy_password: toor";
    let tls = "tls_client: {ca_certificate: ca.pem}\n    tls_name: localhost";
    let front_text = format!(
        "resolver:\n  - {{name: default, type: c-ares}}\nescaper:
  - name: via_http
    type: proxy_http
    proxy_addr: 127.0.0.1:{http}
    {login}
  - name: via_https
    type: proxy_https
    proxy_addr: 127.0.0.1:{https}
    {login}
    {tls}
  - name: via_socks5
    type: proxy_socks5
    proxy_addr: 127.0.0.1:{socks}
    {login}
  - name: via_socks5s
    type: proxy_socks5s
    proxy_addr: 127.0.0.1:{socks_tls}
    {login}
    {tls}
  - name: via_pp
    type: proxy_http
    proxy_addr: 127.0.0.1:{pp}
    {login}
    use_proxy_protocol: 2
  - name: wrong_login
    type: proxy_socks5
    proxy_addr: 127.0.0.1:{socks}
    proxy_username: hop
    proxy_password: wrong
server:
  - {{name: http, type: http_proxy, escaper: via_http, listen: \"127.0.0.1:{{{{http_port}}}}\"}}
  - {{name: https, type: http_proxy, escaper: via_https, listen: \"127.0.0.1:{{{{https_port}}}}\"}}
  - {{name: socks5, type: http_proxy, escaper: via_socks5, listen: \"127.0.0.1:{{{{socks5_port}}}}\"}}
  - {{name: socks5s, type: http_proxy, escaper: via_socks5s, listen: \"127.0.0.1:{{{{socks5s_port}}}}\"}}
  - {{name: wrong, type: http_proxy, escaper: wrong_login, listen: \"127.0.0.1:{{{{wrong_port}}}}\"}}
  - {{name: pp, type: http_proxy, escaper: via_pp, listen: \"127.0.0.1:{{{{pp_port}}}}\"}}
",
        http = next.port("http"),
        https = next.port("https"),
        socks = next.port("socks"),
        socks_tls = next.port("socks_tls"),
        pp = next.port("pp"),
    );
    let mut front = Group::from_text(&front_text, &std::env::temp_dir(), &[]);
    // The front trusts the next group's CA.
    std::fs::copy(certs.path("ca.pem"), front.dir.join("ca.pem")).expect("copy the CA");
    front.start();

    let by_address = origin.url("/");
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    // `pp` speaks PROXY v2 first: the next group's port takes nothing without it.
    for server in ["http", "https", "socks5", "socks5s", "pp"] {
        let proxy = format!("http://127.0.0.1:{}", front.port(server));
        assert_eq!(
            curl(&["-x", &proxy, &by_address]),
            "hello",
            "{server}: forward"
        );
        assert_eq!(
            curl(&["-p", "-x", &proxy, &by_address]),
            "hello",
            "{server}: CONNECT"
        );
        assert_eq!(
            curl(&["-x", &proxy, &by_name]),
            "hello",
            "{server}: a name the next hop resolves"
        );
    }
    let wrong = format!("http://127.0.0.1:{}", front.port("wrong"));
    assert_eq!(curl_status(&["-x", &wrong, &by_address]), "502");
}

/// UDP through `proxy_socks5` and `proxy_socks5s`: the front's SOCKS servers associate
/// with the next group's SOCKS proxy (with the login) and relay each datagram there in a
/// SOCKS header, in "udp connect" and in "udp associate" mode; the answers come back
/// labelled with the echo server that sent them. The next hop's end is the session's.
#[test]
fn udp_goes_through_socks5_next_hops() {
    use g3proxy_tests::UdpEcho;
    use g3proxy_tests::socks_udp::{associate, client_socket, exchange};
    use std::net::SocketAddr;

    let (one, two) = (UdpEcho::start(), UdpEcho::start());
    let mut next = Group::from_text(NEXT, &std::env::temp_dir(), &[]);
    let certs = Certs::make(&next.dir);
    next.start();
    let front_text = format!(
        "escaper:
  - name: via_socks5
    type: proxy_socks5
    proxy_addr: 127.0.0.1:{socks}
    proxy_username: hop
    proxy_password: toor
  - name: via_socks5s
    type: proxy_socks5s
    proxy_addr: 127.0.0.1:{socks_tls}
    proxy_username: hop
    proxy_password: toor
    tls_client: {{ca_certificate: ca.pem}}
    tls_name: localhost
    # The relay announced as 127.0.0.1 is reached at 127.0.0.1 all the same.
    transmute_udp_peer_ip: {{\"127.0.0.1\": \"127.0.0.1\"}}
    end_on_control_closed: true
server:
  - {{name: connect, type: socks_proxy, escaper: via_socks5, listen: \"127.0.0.1:{{{{connect_port}}}}\"}}
  - name: associate
    type: socks_proxy
    escaper: via_socks5s
    use_udp_associate: true
    listen: \"127.0.0.1:{{{{associate_port}}}}\"
",
        socks = next.port("socks"),
        socks_tls = next.port("socks_tls"),
    );
    let mut front = Group::from_text(&front_text, &std::env::temp_dir(), &[]);
    std::fs::copy(certs.path("ca.pem"), front.dir.join("ca.pem")).expect("copy the CA");
    front.start();
    let at = |name: &str| SocketAddr::from(([127, 0, 0, 1], front.port(name)));

    let client = client_socket();
    let (_control, relay) = associate(at("connect"), &client);
    for payload in [&b"first"[..], b"second"] {
        let answer = exchange(&client, relay, one.addr, payload);
        assert_eq!(answer, Some((one.addr, payload.to_vec())), "udp connect");
    }

    let client = client_socket();
    let (mut control, relay) = associate(at("associate"), &client);
    for (echo, payload) in [(&one, &b"to one"[..]), (&two, b"to two"), (&one, b"again")] {
        let answer = exchange(&client, relay, echo.addr, payload);
        assert_eq!(answer, Some((echo.addr, payload.to_vec())), "udp associate");
    }
    // The next hop going away ends its association, and so our session: the control
    // connection closes.
    drop(next);
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut control, &mut byte);
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    assert!(
        matches!(&read, Ok(0)) || read.as_ref().is_err_and(|e| !timed_out(e)),
        "{read:?}"
    );
}

/// `divert_tcp`: the next hop reads a PROXY v2 header first, with the client, the address it
/// came in at and g3's TLVs (target, user, task), then the client's own bytes; here a raw
/// listener of the test reads them and answers.
#[test]
fn divert_tcp_tells_the_next_hop_the_target_user_and_task() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    let hop = TcpListener::bind("127.0.0.1:0").expect("next hop");
    let hop_port = hop.local_addr().expect("hop address").port();
    let (heard, received) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for stream in hop.incoming().flatten() {
            let heard = heard.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                // The header (its length at bytes 14..16), then a request head, then the
                // answer. (The header's own signature holds a blank line.)
                let head_done = |data: &[u8]| {
                    data.len() >= 16 && {
                        let header = 16 + u16::from_be_bytes([data[14], data[15]]) as usize;
                        data.len() > header && data[header..].windows(4).any(|w| w == b"\r\n\r\n")
                    }
                };
                while !head_done(&data) {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\ndiverted",
                );
                let _ = heard.send(data);
            });
        }
    });
    let text = format!(
        "escaper:\n  - {{name: divert, type: divert_tcp, proxy_addr: \"127.0.0.1:{hop_port}\"}}\nuser_group:\n  - name: hops\n    static_users:\n      - name: hop\n        token: {{salt: 113323bdab6fd2cc, md5: 5c81f2becadde7fa5fde9026652ccc84, sha1: ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96}}\nserver:\n  - {{name: http, type: http_proxy, escaper: divert, user_group: hops, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n"
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let target = "http://192.0.2.7:8080/";
    for tunnel in [false, true] {
        let mut args = vec!["-x", proxy.as_str(), "-U", "hop:toor"];
        if tunnel {
            args.push("-p");
        }
        args.push(target);
        assert_eq!(curl(&args), "diverted", "tunnel: {tunnel}");
        let data = received
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the next hop heard");
        let Ok(g3proxy_proto::Parsed::Complete(header, used)) =
            g3proxy_proto::proxy_protocol::parse(g3proxy_proto::proxy_protocol::Version::V2, &data)
        else {
            panic!("a PROXY v2 header first: {data:?}");
        };
        let (client, server) = header.addresses.expect("addresses");
        assert_eq!(client.ip().to_string(), "127.0.0.1");
        assert_eq!(server.port(), group.port("http"));
        // The TLVs: after the 16-byte preamble and the 12 bytes of IPv4 addresses and ports.
        let mut tlvs = std::collections::BTreeMap::new();
        let mut at = 28;
        while at + 3 <= used {
            let len = u16::from_be_bytes([data[at + 1], data[at + 2]]) as usize;
            tlvs.insert(data[at], data[at + 3..at + 3 + len].to_vec());
            at += 3 + len;
        }
        assert_eq!(at, used, "TLVs fill the header exactly");
        assert_eq!(tlvs[&0xe0], b"192.0.2.7:8080");
        assert_eq!(tlvs[&0xe2], b"hop");
        assert_eq!(tlvs[&0xe3].len(), 16);
        // Tunnelled or forwarded, the client's request follows, in origin form.
        let rest = String::from_utf8_lossy(&data[used..]);
        assert!(rest.starts_with("GET / HTTP/1.1"), "{rest}");
        assert!(
            !rest.contains("Proxy-Authorization"),
            "the login stays with us: {rest}"
        );
    }
}
