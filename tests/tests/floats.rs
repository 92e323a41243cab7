//! Scenario: float escapers, driven by `g3proxy-ctl escaper NAME publish`.
//! - `direct_float`: no bind address, no way out (523); a published address is where
//!   connections leave from (the origin sees it: 127.0.0.2, 127.0.0.3 on `lo`); an expired
//!   one is not used; the cache file keeps the last value;
//! - `proxy_float`: published peers of every type (a second group of ours) carry the tasks;
//!   UDP goes through a socks5 peer; a peer within its expiry guard is not used;
//! - a publish that is no JSON, of the wrong form, to an unknown escaper or to one that takes
//!   no publish is the ctl's error, and nothing changes;
//! - what was published holds across a reload and a supervisor replacement;
//! - a user's path picks a published bind or peer by id, or gives its own by value; a
//!   request's path number picks a `direct_fixed` bind with `enable_path_selection`.

use std::time::Duration;

use g3proxy_tests::socks_udp;
use g3proxy_tests::{Group, Origin, SourceOrigin, curl, curl_status, wait_until};

/// `escaper NAME publish DATA`: whether it succeeded, and what it said.
fn publish(group: &Group, escaper: &str, data: &str) -> (bool, String) {
    let output = group.ctl(&["escaper", escaper, "publish", data]);
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

const FRONT: &str = "escaper:
  - name: float
    type: direct_float
    resolver: none
    cache_ipv4: float-v4.json
    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}
  - name: peers
    type: proxy_float
    cache: peers.json
    expire_guard_duration: 60s
  - {name: fixed, type: direct_fixed, resolver: none}
server:
  - {name: direct, type: http_proxy, escaper: float, listen: \"127.0.0.1:{{direct_port}}\"}
  - {name: chained, type: http_proxy, escaper: peers, listen: \"127.0.0.1:{{chained_port}}\"}
  - {name: chained_udp, type: socks_proxy, escaper: peers, listen: \"127.0.0.1:{{chained_udp_port}}\"}
";

const NEXT: &str = "escaper:
  - name: out
    type: direct_fixed
    resolver: none
    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}
server:
  - {name: http, type: http_proxy, escaper: out, listen: \"127.0.0.1:{{http_port}}\"}
  - {name: socks, type: socks_proxy, escaper: out, listen: \"127.0.0.1:{{socks_port}}\"}
";

#[test]
fn published_binds_and_peers_carry_tasks_and_outlive_the_supervisor() {
    let reporting = SourceOrigin::start("127.0.0.1").addr;
    let origin = Origin::start("127.0.0.1");
    let mut next = Group::from_text(NEXT, &std::env::temp_dir(), &[]);
    next.start();
    let mut group = Group::from_text(FRONT, &std::env::temp_dir(), &[]);
    let old = group.start();
    let direct = format!("http://127.0.0.1:{}", group.port("direct"));
    let chained = format!("http://127.0.0.1:{}", group.port("chained"));
    let source = || curl(&["-x", &direct, &format!("http://{reporting}/")]);

    // Nothing published: no address to leave from, no peer to go through.
    assert_eq!(curl_status(&["-x", &direct, &origin.url("/")]), "523");
    assert_eq!(curl_status(&["-x", &chained, &origin.url("/")]), "523");

    assert_eq!(
        publish(&group, "float", r#"{"ipv4": "127.0.0.2"}"#),
        (true, "notice: success\n".to_string())
    );
    assert_eq!(source(), "127.0.0.2");
    let both = r#"{"ipv4": ["127.0.0.2", {"ip": "127.0.0.3", "id": "b", "isp": "test"}]}"#;
    assert!(publish(&group, "float", both).0);
    let seen: std::collections::BTreeSet<String> = (0..30).map(|_| source()).collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["127.0.0.2", "127.0.0.3"]
    );
    let one_expired =
        r#"{"ipv4": [{"ip": "127.0.0.2", "expire": "2000-01-01T00:00:00Z"}, "127.0.0.3"]}"#;
    assert!(publish(&group, "float", one_expired).0);
    for _ in 0..10 {
        assert_eq!(source(), "127.0.0.3");
    }
    let cached = std::fs::read_to_string(group.dir.join("float-v4.json")).expect("the cache");
    assert!(cached.contains("127.0.0.3"), "{cached}");

    // Mistakes are named, and nothing changes.
    for (escaper, data, said) in [
        ("float", "{not json", "not JSON"),
        ("float", r#"{"ipv4": "::1"}"#, "is not an ipv4 address"),
        ("float", r#"{"ipv5": "127.0.0.2"}"#, "unknown key"),
        (
            "peers",
            r#"{"type": "ftp", "addr": "127.0.0.1:1"}"#,
            "unknown peer type",
        ),
        (
            "peers",
            r#"{"type": "http", "addr": "localhost:1"}"#,
            "invalid addr",
        ),
        ("nowhere", "{}", "no escaper named nowhere"),
        (
            "fixed",
            "{}",
            "only direct_float and proxy_float take a publish",
        ),
    ] {
        let (success, message) = publish(&group, escaper, data);
        assert!(!success, "{escaper} {data}: {message}");
        assert!(message.contains(said), "{escaper} {data}: {message}");
    }
    assert_eq!(source(), "127.0.0.3");

    // Peers of each type, the second group behind them.
    let (http, socks) = (next.port("http"), next.port("socks"));
    for peer_type in ["http", "socks5"] {
        let port = if peer_type == "http" { http } else { socks };
        let peer = format!(r#"[{{"type": "{peer_type}", "addr": "127.0.0.1:{port}"}}]"#);
        assert!(publish(&group, "peers", &peer).0, "{peer_type}");
        assert_eq!(
            curl(&["-x", &chained, &origin.url("/")]),
            "hello",
            "{peer_type}"
        );
        assert_eq!(
            curl(&["-p", "-x", &chained, &origin.url("/")]),
            "hello",
            "{peer_type} CONNECT"
        );
    }
    // UDP through the socks5 peer, published last.
    let echo = g3proxy_tests::UdpEcho::start();
    let client = socks_udp::client_socket();
    let front_udp = std::net::SocketAddr::from(([127, 0, 0, 1], group.port("chained_udp")));
    let (control, relay) = socks_udp::associate(front_udp, &client);
    assert_eq!(
        socks_udp::exchange(&client, relay, echo.addr, b"ping"),
        Some((echo.addr, b"ping".to_vec()))
    );
    // A live session would hold the generation below through the replacement.
    drop(control);
    // A peer that expires within the guard (60 s) is not used; the other one is.
    let soon = format!(
        r#"[{{"type": "http", "addr": "127.0.0.1:1", "expire": "{}"}}, {{"type": "socks5", "addr": "127.0.0.1:{socks}", "expire": "2100-01-01T00:00:00Z"}}]"#,
        rfc3339_in(30)
    );
    assert!(publish(&group, "peers", &soon).0);
    for _ in 0..5 {
        assert_eq!(curl(&["-x", &chained, &origin.url("/")]), "hello");
    }

    // A reload, then a successor supervisor: both keep what was published.
    assert!(group.ctl(&["reload"]).status.success());
    assert_eq!(source(), "127.0.0.3");
    assert_eq!(curl(&["-x", &chained, &origin.url("/")]), "hello");
    let new = group.spawn_supervisor();
    wait_until(Duration::from_secs(30), "the successor to serve", || {
        let fleet = group.fleet_of(None)?;
        (fleet["supervisor_pid"] == new).then_some(())
    });
    assert!(group.wait_exit(old, Duration::from_secs(30)));
    assert_eq!(source(), "127.0.0.3");
    assert_eq!(curl(&["-x", &chained, &origin.url("/")]), "hello");
}

/// An RFC 3339 time `secs` seconds from now, in UTC.
fn rfc3339_in(secs: u64) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + secs;
    let (days, rest) = ((at / 86_400) as i64, at % 86_400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A user's `egress_path_id_map` picks a `direct_float`'s published bind by its id and a
/// `route_select`'s next escaper by name; a user without one spreads over the binds; an id
/// nothing carries fails the task rather than leaving from another address.
#[test]
fn a_users_path_ids_pick_the_bind_and_the_next_escaper() {
    let reporting = SourceOrigin::start("127.0.0.1").addr;
    let text = "escaper:
  - {name: float, type: direct_float, resolver: none, egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}}
  - {name: a, type: direct_fixed, resolver: none, bind_ip: 127.0.0.4, egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}}
  - {name: b, type: direct_fixed, resolver: none, bind_ip: 127.0.0.5, egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}}
  - {name: sel, type: route_select, next_nodes: [a, b]}
  - name: indexed
    type: direct_fixed
    resolver: none
    bind_ip: [127.0.0.7, 127.0.0.8]
    enable_path_selection: true
    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}
user_group:
  - name: g
    static_users:
      - {name: pinned, token: null, egress_path_id_map: {float: b, sel: b}}
      - {name: free, token: null}
      - {name: lost, token: null, egress_path_id_map: {float: nowhere}}
      - {name: valued, token: null, egress_path_value_map: {float: {ip: 127.0.0.6}}}
      - {name: stale, token: null, egress_path_value_map: {float: {ip: 127.0.0.6, expire: \"2000-01-01T00:00:00Z\"}}}
server:
  - {name: direct, type: http_proxy, escaper: float, user_group: g, listen: \"127.0.0.1:{{direct_port}}\"}
  - {name: selected, type: http_proxy, escaper: sel, user_group: g, listen: \"127.0.0.1:{{selected_port}}\"}
  - name: indexed
    type: http_proxy
    escaper: indexed
    egress_path_selection_header: X-Egress-Path
    listen: \"127.0.0.1:{{indexed_port}}\"
";
    let mut group = Group::from_text(text, &std::env::temp_dir(), &[]);
    group.start();
    let both = r#"{"ipv4": ["127.0.0.2", {"ip": "127.0.0.3", "id": "b"}]}"#;
    assert!(publish(&group, "float", both).0);
    let url = format!("http://{reporting}/");
    let through = |server: &str, user: &str| {
        let proxy = format!("http://127.0.0.1:{}", group.port(server));
        curl(&["-x", &proxy, "-U", &format!("{user}:x"), &url])
    };
    for _ in 0..10 {
        assert_eq!(through("direct", "pinned"), "127.0.0.3");
        assert_eq!(through("selected", "pinned"), "127.0.0.5");
    }
    let seen: std::collections::BTreeSet<String> =
        (0..30).map(|_| through("direct", "free")).collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["127.0.0.2", "127.0.0.3"]
    );
    let proxy = format!("http://127.0.0.1:{}", group.port("direct"));
    assert_ne!(
        curl_status(&["-x", &proxy, "-U", "lost:x", &url]),
        "200",
        "no bind with that id"
    );
    // A value is the bind itself, published or not; an expired one is not used.
    for _ in 0..5 {
        assert_eq!(through("direct", "valued"), "127.0.0.6");
    }
    assert_ne!(curl_status(&["-x", &proxy, "-U", "stale:x", &url]), "200");

    // direct_fixed with enable_path_selection: the request's number picks the bind.
    let proxy = format!("http://127.0.0.1:{}", group.port("indexed"));
    for (number, bind) in [
        ("1", "127.0.0.7"),
        ("2", "127.0.0.8"),
        ("0", "127.0.0.8"),
        ("3", "127.0.0.7"),
    ] {
        let header = format!("X-Egress-Path: {number}");
        for _ in 0..3 {
            assert_eq!(
                curl(&["-x", &proxy, "-H", &header, &url]),
                bind,
                "path {number}"
            );
        }
    }
}

/// A user's path picks a `proxy_float` peer: by the `id` it was published with (one of two
/// peers, the other dead), or as a whole peer in `egress_path_value_map`.
#[test]
fn a_users_path_picks_the_peer() {
    let origin = Origin::start("127.0.0.1");
    let mut next = Group::from_text(NEXT, &std::env::temp_dir(), &[]);
    next.start();
    let live = format!("127.0.0.1:{}", next.port("http"));
    let text = format!(
        "escaper:
  - {{name: peers, type: proxy_float, expire_guard_duration: 1s}}
user_group:
  - name: g
    static_users:
      - {{name: good, token: null, egress_path_id_map: {{peers: good}}}}
      - {{name: bad, token: null, egress_path_id_map: {{peers: bad}}}}
      - {{name: own, token: null, egress_path_value_map: {{peers: {{type: http, addr: \"{live}\"}}}}}}
      - {{name: own_dead, token: null, egress_path_value_map: {{peers: {{type: http, addr: \"127.0.0.1:1\"}}}}}}
server:
  - {{name: chained, type: http_proxy, escaper: peers, user_group: g, listen: \"127.0.0.1:{{{{chained_port}}}}\"}}
"
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let peers = format!(
        r#"[{{"type": "http", "addr": "127.0.0.1:1", "id": "bad"}}, {{"type": "http", "addr": "{live}", "id": "good"}}]"#
    );
    assert!(publish(&group, "peers", &peers).0);
    let proxy = format!("http://127.0.0.1:{}", group.port("chained"));
    let status =
        |user: &str| curl_status(&["-x", &proxy, "-U", &format!("{user}:x"), &origin.url("/")]);
    for _ in 0..10 {
        assert_eq!(status("good"), "200");
        assert_eq!(status("own"), "200");
    }
    assert_ne!(status("bad"), "200");
    assert_ne!(status("own_dead"), "200");
}
