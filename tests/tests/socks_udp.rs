//! Scenario: SOCKS5 UDP against UDP echo servers. The default "udp connect" relays to the
//! first datagram's target and ends the session on a datagram for another; "udp associate"
//! relays each datagram to its own target and labels answers with their source; the reply
//! announces the bound port in the configured range, or the transmuted address; closing the
//! TCP control connection ends the session; the server's and the escaper's
//! `udp_sock_speed_limit` drop what goes over them.

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
