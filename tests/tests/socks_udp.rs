//! Scenario: SOCKS5 UDP against UDP echo servers. The default "udp connect" relays to the
//! first datagram's target and ends the session on a datagram for another; "udp associate"
//! relays each datagram to its own target and labels answers with their source; the reply
//! announces the bound port in the configured range, or the transmuted address; closing the
//! TCP control connection ends the session; the server's and the escaper's
//! `udp_sock_speed_limit` drop what goes over them; the escaper's `udp_misc_opts` set the
//! TTL and TOS the target sees.

use std::net::SocketAddr;
use std::time::Duration;

use g3proxy_tests::socks_udp::{associate, client_socket, datagram, exchange};
use g3proxy_tests::{Group, UdpEcho};

fn port(group: &Group, name: &str) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], group.port(name)))
}

#[test]
fn udp_connect_keeps_to_its_first_target() {
    let (one, two) = (UdpEcho::start(), UdpEcho::start());
    let mut group = Group::new("udp");
    group.start();
    let client = client_socket();
    let (control, relay) = associate(port(&group, "connect"), &client);
    for payload in [&b"first"[..], b"second"] {
        let (source, echoed) = exchange(&client, relay, one.addr, payload).expect("an answer");
        assert_eq!((source, echoed.as_slice()), (one.addr, payload));
    }
    // Another target ends the session: no answer, now or for the first target.
    assert!(exchange(&client, relay, two.addr, b"elsewhere").is_none());
    assert!(exchange(&client, relay, one.addr, b"again").is_none());
    drop(control);
}

#[test]
fn udp_associate_relays_each_datagram_to_its_target() {
    let (one, two) = (UdpEcho::start(), UdpEcho::start());
    let mut group = Group::new("udp");
    group.start();
    let client = client_socket();
    let (control, relay) = associate(port(&group, "associate"), &client);
    assert!((20000..=60000).contains(&relay.port()), "{relay}");
    for (echo, payload) in [
        (&one, &b"to one"[..]),
        (&two, b"to two"),
        (&one, b"one again"),
    ] {
        let (source, echoed) = exchange(&client, relay, echo.addr, payload).expect("an answer");
        assert_eq!((source, echoed.as_slice()), (echo.addr, payload));
    }
    // The session lives as long as its control connection.
    drop(control);
    g3proxy_tests::wait_until(Duration::from_secs(10), "the session to end", || {
        exchange(&client, relay, one.addr, b"after close")
            .is_none()
            .then_some(())
    });
}

#[test]
fn the_reply_announces_the_transmuted_address() {
    let mut group = Group::new("udp");
    group.start();
    let client = client_socket();
    let (_control, relay) = associate(port(&group, "announced"), &client);
    assert_eq!(relay.ip().to_string(), "192.0.2.10");
}

#[test]
fn datagrams_over_the_speed_limit_are_dropped() {
    let mut group = Group::new("udp");
    group.start();
    // The server's limit on what clients send, then the escaper's on what targets send.
    for server in ["limited", "escaper_limited"] {
        assert_eq!(answers_to_six(&group, server), 2, "{server}");
    }
}

/// Six datagrams sent at once through `server`: how many answers come back.
fn answers_to_six(group: &Group, server: &str) -> usize {
    let echo = UdpEcho::start();
    let client = client_socket();
    let (_control, relay) = associate(port(group, server), &client);
    // Two datagrams per 1024 ms may pass; six sent at once get two answers.
    for i in 0..6u8 {
        client.send_to(&datagram(echo.addr, &[i]), relay).unwrap();
    }
    client
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut answers = 0;
    let mut buffer = [0u8; 64];
    while client.recv(&mut buffer).is_ok() {
        answers += 1;
    }
    answers
}

/// A UDP echo that answers with the TTL and TOS its datagram arrived with.
const IP_REPORTING_ECHO: &str = r#"
import socket, sys
# Linux's values where this Python lacks the names.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, ancillary, _, source = s.recvmsg(2048, 256)
    seen = {}
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == socket.IP_TTL:
            seen["ttl"] = int.from_bytes(value[:4], sys.byteorder)
        if level == socket.IPPROTO_IP and kind == socket.IP_TOS:
            seen["tos"] = value[0]
    s.sendto(("ttl=%s tos=%s" % (seen.get("ttl"), seen.get("tos"))).encode(), source)
"#;

#[test]
fn the_escapers_udp_misc_opts_reach_the_target() {
    let echo = g3proxy_tests::PythonPeer::start(IP_REPORTING_ECHO, &[]);
    let target = SocketAddr::from(([127, 0, 0, 1], echo.port));
    let mut group = Group::new("udp");
    group.start();
    for (server, seen) in [("marked", "ttl=7 tos=32"), ("associate", "ttl=64 tos=0")] {
        let client = client_socket();
        let (_control, relay) = associate(port(&group, server), &client);
        let (_, answer) = exchange(&client, relay, target, b"how").expect("an answer");
        assert_eq!(String::from_utf8_lossy(&answer), seen, "{server}");
    }
}
