//! Scenario: resolvers against a real name server (Debian's unbound on loopback, serving a
//! test zone over UDP, TCP, DNS over TLS and DNS over HTTPS with the test CA's certificate;
//! DNS over QUIC and over HTTP/3 through a front of ours on aioquic, as unbound has neither).
//! - c-ares and hickory (plain, DoT, DoH, DoQ, DoH3) answer `resolver NAME query` with the zone's
//!   addresses, each family as the strategy asks, hickory through an alias too; a missing
//!   name is the reason, exit 0;
//! - an answer too big for UDP comes over TCP;
//! - a proxied request reaches an origin through a name only the zone knows;
//! - a second lookup is served from the cache: the name server is asked once; past its fresh
//!   time an answer is served stale while it is asked again; the `resolver.query.*` counts
//!   arrive with g3's names and tags;
//! - fail_over answers from the standby when the primary never answers.

use std::net::UdpSocket;
use std::time::Duration;

use g3proxy_tests::unbound::quic_front;
use g3proxy_tests::{Certs, Group, Origin, StatsdReceiver, Unbound, curl_status, wait_until};

/// `resolver NAME query ARGS…` through the group's ctl: its exit status and its lines.
fn query(group: &Group, resolver: &str, args: &[&str]) -> (bool, Vec<String>) {
    let mut all = vec!["resolver", resolver, "query"];
    all.extend(args);
    let output = group.ctl(&all);
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
        .map(str::to_string)
        .collect();
    (output.status.success(), lines)
}

/// 100 addresses: an answer of about 1.6 KB, beyond what UDP carries here.
fn big_records() -> Vec<String> {
    (1..=100)
        .map(|i| format!("big.test. 300 IN A 10.0.0.{i}"))
        .collect()
}

#[test]
fn every_resolver_type_answers_from_a_real_name_server() {
    let origin = Origin::start("127.0.0.1");
    let certs_dir = std::env::temp_dir().join(format!("g3proxy-dns-certs-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let big = big_records();
    let mut records = vec![
        "a.test. 300 IN A 127.0.0.2",
        "a.test. 300 IN AAAA ::2",
        "origin.test. 300 IN A 127.0.0.1",
        "www.test. 300 IN CNAME a.test.",
    ];
    records.extend(big.iter().map(String::as_str));
    let unbound = Unbound::start(&certs, &records);
    let doq = quic_front("doq", &certs, &unbound);
    let doh3 = quic_front("doh3", &certs, &unbound);
    let ca = certs.path("ca.pem");
    let tls = |protocol: &str| {
        format!(
            "{{protocol: {protocol}, tls_name: localhost, tls_client: {{ca_certificate: \"{}\"}}}}",
            ca.display()
        )
    };
    let text = format!(
        "resolver:\n  - name: cares\n    type: c-ares\n    server: 127.0.0.1:{port}\n  - name: plain\n    type: hickory\n    server: 127.0.0.1\n    server_port: {port}\n  - name: dot\n    type: hickory\n    server: [127.0.0.1]\n    server_port: {dot}\n    encryption: {dot_tls}\n  - name: doh\n    type: hickory\n    server: 127.0.0.1\n    server_port: {doh}\n    encryption: {doh_tls}\n  - name: doq\n    type: hickory\n    server: 127.0.0.1\n    server_port: {doq}\n    encryption: {doq_tls}\n  - name: doh3\n    type: hickory\n    server: 127.0.0.1\n    server_port: {doh3}\n    encryption: {doh3_tls}\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: doh\n    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}\nserver:\n  - name: http\n    type: http_proxy\n    escaper: default\n    listen: \"127.0.0.1:{{{{http_port}}}}\"\n",
        port = unbound.port,
        dot = unbound.dot_port,
        doh = unbound.doh_port,
        dot_tls = tls("dot"),
        doh_tls = tls("doh"),
        doq = doq.port,
        doh3 = doh3.port,
        doq_tls = tls("doq"),
        doh3_tls = tls("doh3"),
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();

    for resolver in ["cares", "plain", "dot", "doh", "doq", "doh3"] {
        assert_eq!(
            query(&group, resolver, &["a.test"]),
            (true, vec!["127.0.0.2".to_string()]),
            "{resolver}: A first"
        );
        assert_eq!(
            query(&group, resolver, &["a.test", "-s", "ipv6only"]),
            (true, vec!["::2".to_string()]),
            "{resolver}: AAAA only"
        );
        // The zone's server gives an alias without its address, as an authoritative server
        // does; hickory asks again for the alias's target. (c-ares leaves that to the
        // recursive server it expects to ask.)
        if resolver != "cares" {
            assert_eq!(
                query(&group, resolver, &["www.test", "--strategy", "IPv4Only"]),
                (true, vec!["127.0.0.2".to_string()]),
                "{resolver}: through an alias"
            );
        }
        let (success, lines) = query(&group, resolver, &["missing.test", "-s", "ipv4only"]);
        assert!(success, "{resolver}: a failed lookup is still an answer");
        assert_eq!(lines, ["domain name not found"], "{resolver}");
        let (success, lines) = query(&group, resolver, &["big.test", "-s", "ipv4only"]);
        assert!(success, "{resolver}: {lines:?}");
        assert_eq!(
            lines.len(),
            100,
            "{resolver}: every address of a big answer"
        );
    }
    // The QUIC resolvers' questions went through their fronts.
    for front in [&doq, &doh3] {
        assert!(front.lines.lock().unwrap().iter().any(|l| l == "query"));
    }
    let (success, lines) = query(&group, "nowhere", &["a.test"]);
    assert!(!success, "an unknown resolver is an error: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no resolver named nowhere")),
        "{lines:?}"
    );

    // A task's lookup, over DNS over HTTPS, for a name only the test zone has.
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let url = format!("http://origin.test:{}/", origin.addr.port());
    assert_eq!(curl_status(&["-x", &proxy, &url]), "200");
    drop(group);
    let _ = std::fs::remove_dir_all(certs_dir);
}

#[test]
fn answers_are_cached_and_fail_over_takes_the_standby() {
    let certs_dir = std::env::temp_dir().join(format!("g3proxy-dns-cache-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let unbound = Unbound::start(
        &certs,
        &[
            "cached.test. 300 IN A 127.0.0.5",
            "both.test. 300 IN A 127.0.0.6",
            "stale.test. 300 IN A 127.0.0.7",
        ],
    );
    // A name server that never answers: its socket takes questions and drops them.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent name server");
    let statsd = StatsdReceiver::start();
    let text = format!(
        "stat:\n  target: {{udp: 127.0.0.1:{statsd}}}\n  emit_interval: 100ms\nresolver:\n  - name: cares\n    type: c-ares\n    server: 127.0.0.1:{port}\n  - name: short\n    type: hickory\n    server: 127.0.0.1\n    server_port: {port}\n    positive_min_ttl: 1\n    positive_max_ttl: 1\n  - name: silent\n    type: hickory\n    server: 127.0.0.1\n    server_port: {silent}\n    each_timeout: 30s\n    request_timeout: 30s\n  - name: failover\n    type: fail_over\n    primary: silent\n    standby: cares\n    fallback_delay: 100ms\n",
        statsd = statsd.port,
        port = unbound.port,
        silent = silent.local_addr().expect("silent address").port(),
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();

    for _ in 0..3 {
        assert_eq!(
            query(&group, "cares", &["cached.test", "-s", "ipv4only"]),
            (true, vec!["127.0.0.5".to_string()])
        );
    }
    // (unbound writes its log when it gets to it.)
    wait_until(
        Duration::from_secs(10),
        "one question for three lookups",
        || (unbound.questions("cached.test.", "A") == 1).then_some(()),
    );

    // Fresh for a second (the clamps), then served stale while it is asked again: every
    // lookup is answered at once, and the name server sees the renewals.
    let before = unbound.questions("stale.test.", "A");
    assert_eq!(before, 0);
    wait_until(Duration::from_secs(20), "a stale answer renewed", || {
        assert_eq!(
            query(&group, "short", &["stale.test", "-s", "ipv4only"]),
            (true, vec!["127.0.0.7".to_string()])
        );
        (unbound.questions("stale.test.", "A") >= 2).then_some(())
    });

    // The resolver's counts, as g3 names and tags them.
    wait_until(Duration::from_secs(10), "the resolver metrics", || {
        let tags = ["resolver:cares", "rr_type:A"];
        let count = |name| statsd.total(name, &tags);
        (count("g3proxy.resolver.query.total") == 3
            && count("g3proxy.resolver.query.cached") == 2
            && count("g3proxy.resolver.query.driver.total") == 1)
            .then_some(())
    });
    wait_until(Duration::from_secs(10), "stale answers counted", || {
        let trashed = statsd.total("g3proxy.resolver.query.trashed", &["resolver:short"]);
        (trashed >= 1).then_some(())
    });

    // The primary never answers: the standby's answer comes once the fallback delay passed,
    // long before the primary's own timeouts.
    assert_eq!(
        query(&group, "failover", &["both.test", "-s", "ipv4only"]),
        (true, vec!["127.0.0.6".to_string()])
    );
    drop(group);
    let _ = std::fs::remove_dir_all(certs_dir);
}
