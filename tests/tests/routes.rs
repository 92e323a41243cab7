//! Scenario: the route escapers that choose by who asks, by where a name resolves, by a pick
//! policy, or at random. Each next escaper is a `direct_fixed` bound to its own loopback
//! address, so the origin, which answers with the address a request came from, shows which
//! escaper carried it.
//! - `route_client`: a client from 127.0.0.5 goes one way, others the default way;
//! - `route_resolved`: names resolved by a real name server, routed by the network of their
//!   address;
//! - `route_select`: `ketama` keeps one client's tasks to one host on one escaper, `rr`
//!   alternates;
//! - `trick_float`: tasks spread over its escapers;
//! - `route_mapping`: a request's `egress_path_selection_header` number picks the escaper
//!   by its place (0 the last, larger numbers wrap), the header is not passed on, a header
//!   that is no number gets 400, and requests without it spread at random.

use std::collections::BTreeSet;

use g3proxy_tests::{
    Certs, Group, RecordingOrigin, SourceOrigin, Unbound, bound_escaper, curl, curl_status,
};

#[test]
fn routes_choose_by_client_address_pick_policy_and_chance() {
    let origin = SourceOrigin::start("127.0.0.1");
    let far = SourceOrigin::start("127.0.0.7");
    let certs_dir = std::env::temp_dir().join(format!("g3proxy-routes-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let unbound = Unbound::start(
        &certs,
        &[
            "near.test. 300 IN A 127.0.0.1",
            "far.test. 300 IN A 127.0.0.7",
        ],
    );
    let text = format!(
        "resolver:\n  - {{name: dns, type: c-ares, server: \"127.0.0.1:{dns}\"}}\nescaper:
  - {{name: two, type: direct_fixed, resolver: dns, bind_ip: 127.0.0.2, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}
  - {{name: three, type: direct_fixed, resolver: dns, bind_ip: 127.0.0.3, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}
  - name: by_client
    type: route_client
    exact_match: [{{next: two, ips: [127.0.0.5]}}]
    subnet_match: [{{next: three, subnets: [127.0.0.6/32]}}]
    default_next: three
  - name: by_address
    type: route_resolved
    resolver: dns
    resolve_strategy: IPv4Only
    lpm_match: [{{next: two, networks: [127.0.0.1/32]}}, {{next: three, networks: [127.0.0.0/8]}}]
    default_next: two
  - {{name: sticky, type: route_select, next_nodes: [two, three]}}
  - {{name: turns, type: route_select, next_nodes: [two, {{name: three, weight: 1}}], next_pick_policy: rr}}
  - {{name: chance, type: trick_float, next: [two, three]}}
server:
  - {{name: by_client, type: http_proxy, escaper: by_client, listen: \"127.0.0.1:{{{{by_client_port}}}}\"}}
  - {{name: by_address, type: http_proxy, escaper: by_address, listen: \"127.0.0.1:{{{{by_address_port}}}}\"}}
  - {{name: sticky, type: http_proxy, escaper: sticky, listen: \"127.0.0.1:{{{{sticky_port}}}}\"}}
  - {{name: turns, type: http_proxy, escaper: turns, listen: \"127.0.0.1:{{{{turns_port}}}}\"}}
  - {{name: chance, type: http_proxy, escaper: chance, listen: \"127.0.0.1:{{{{chance_port}}}}\"}}
",
        dns = unbound.port
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = |server: &str| format!("http://127.0.0.1:{}", group.port(server));
    let through = |server: &str, from: &str, url: &str| {
        curl(&["--interface", from, "-x", &proxy(server), url])
    };

    // By the client's address.
    assert_eq!(
        through("by_client", "127.0.0.5", &origin.url()),
        "127.0.0.2"
    );
    assert_eq!(
        through("by_client", "127.0.0.6", &origin.url()),
        "127.0.0.3"
    );
    assert_eq!(
        through("by_client", "127.0.0.1", &origin.url()),
        "127.0.0.3"
    );

    // By where the name resolves (and an address as it is).
    let near = format!("http://near.test:{}/", origin.addr.port());
    let far_url = format!("http://far.test:{}/", far.addr.port());
    assert_eq!(through("by_address", "127.0.0.1", &near), "127.0.0.2");
    assert_eq!(through("by_address", "127.0.0.1", &far_url), "127.0.0.3");
    assert_eq!(through("by_address", "127.0.0.1", &far.url()), "127.0.0.3");

    // One client to one host keeps its escaper; round robin takes turns.
    let sticky: BTreeSet<String> = (0..10)
        .map(|_| through("sticky", "127.0.0.1", &origin.url()))
        .collect();
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    let turns: Vec<String> = (0..4)
        .map(|_| through("turns", "127.0.0.1", &origin.url()))
        .collect();
    assert_ne!(turns[0], turns[1], "{turns:?}");
    assert_eq!(turns[0], turns[2], "{turns:?}");

    // At random: both, over enough tasks.
    let chance: BTreeSet<String> = (0..30)
        .map(|_| through("chance", "127.0.0.1", &origin.url()))
        .collect();
    assert_eq!(chance.len(), 2, "{chance:?}");
    drop(group);
    let _ = std::fs::remove_dir_all(certs_dir);
}

#[test]
fn route_mapping_follows_the_path_number_of_each_request() {
    let origin = SourceOrigin::start("127.0.0.1");
    let recording = RecordingOrigin::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        false,
    );
    let text = format!(
        "escaper:\n{}{}{}  - {{name: mapped, type: route_mapping, next: [one, two, three]}}\nserver:\n  - {{name: http, type: http_proxy, escaper: mapped, egress_path_selection_header: X-Path, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n",
        bound_escaper("one", "127.0.0.2"),
        bound_escaper("two", "127.0.0.3"),
        bound_escaper("three", "127.0.0.4"),
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let with_path = |path: &str| {
        let header = format!("X-Path: {path}");
        curl(&["-x", &proxy, "-H", &header, &origin.url()])
    };
    assert_eq!(with_path("1"), "127.0.0.2");
    assert_eq!(with_path("2"), "127.0.0.3");
    assert_eq!(with_path("3"), "127.0.0.4");
    assert_eq!(with_path("0"), "127.0.0.4");
    assert_eq!(with_path("5"), "127.0.0.3");
    assert_eq!(
        curl_status(&["-x", &proxy, "-H", "X-Path: two", &origin.url()]),
        "400"
    );
    let spread: BTreeSet<String> = (0..30)
        .map(|_| curl(&["-x", &proxy, &origin.url()]))
        .collect();
    assert!(spread.len() > 1, "no path number: at random, {spread:?}");
    // On one keep-alive client connection, a new path number is a new upstream
    // connection: the kept one belongs to the other path.
    let kept_origin = SourceOrigin::start_keep_alive("127.0.0.1");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", group.port("http"))).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    for (path, expected) in [("1", "127.0.0.2"), ("1", "127.0.0.2"), ("2", "127.0.0.3")] {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nX-Path: {path}\r\n\r\n",
            kept_origin.url(),
            kept_origin.addr
        );
        std::io::Write::write_all(&mut client, request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 512];
        while !answer.ends_with(expected.as_bytes()) {
            let n = std::io::Read::read(&mut client, &mut chunk).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
            assert!(
                answer.len() < 4096,
                "path {path}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // The header was for the proxy.
    let url = format!("http://{}/", recording.addr);
    assert_eq!(curl(&["-x", &proxy, "-H", "X-Path: 1", &url]), "ok");
    let request = recording.next_request().to_ascii_lowercase();
    assert!(!request.contains("x-path"), "{request}");
}
