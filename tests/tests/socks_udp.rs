//! Scenario: SOCKS5 UDP against UDP echo servers. The default "udp connect" relays to the
//! first datagram's target and ends the session on a datagram for another; "udp associate"
//! relays each datagram to its own target and labels answers with their source; the reply
//! announces the bound port in the configured range, or the transmuted address; closing the
//! TCP control connection ends the session.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use g3proxy_tests::{Group, UdpEcho};

/// A SOCKS5 UDP ASSOCIATE from `client`'s address; answers the control connection and the
/// relay address the proxy announced.
fn associate(proxy: SocketAddr, client: &UdpSocket) -> (TcpStream, SocketAddr) {
    let mut control = TcpStream::connect(proxy).unwrap();
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    control.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    control.read_exact(&mut choice).unwrap();
    let local = client.local_addr().unwrap();
    let IpAddr::V4(ip) = local.ip() else {
        panic!("ipv4 client")
    };
    let mut request = vec![5, 3, 0, 1];
    request.extend_from_slice(&ip.octets());
    request.extend_from_slice(&local.port().to_be_bytes());
    control.write_all(&request).unwrap();
    let mut reply = [0u8; 10];
    control.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], [5, 0, 0, 1], "udp associate refused: {reply:?}");
    let announced = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    (control, announced)
}

fn datagram(target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V4(ip) = target.ip() else {
        panic!("ipv4 target")
    };
    let mut out = vec![0, 0, 0, 1];
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&target.port().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends one datagram through the relay and waits for the answer: its source and payload.
fn exchange(
    client: &UdpSocket,
    relay: SocketAddr,
    target: SocketAddr,
    payload: &[u8],
) -> Option<(SocketAddr, Vec<u8>)> {
    client.send_to(&datagram(target, payload), relay).unwrap();
    let mut buffer = [0u8; 2048];
    let n = client.recv(&mut buffer).ok()?;
    assert_eq!(
        buffer[..4],
        [0, 0, 0, 1],
        "answer header: {:?}",
        &buffer[..n]
    );
    let source = SocketAddr::from((
        [buffer[4], buffer[5], buffer[6], buffer[7]],
        u16::from_be_bytes([buffer[8], buffer[9]]),
    ));
    Some((source, buffer[10..n].to_vec()))
}

fn client_socket() -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client
}

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
    let echo = UdpEcho::start();
    let mut group = Group::new("udp");
    group.start();
    let client = client_socket();
    let (_control, relay) = associate(port(&group, "limited"), &client);
    // Two datagrams per 1024 ms may go up; six sent at once get two answers.
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
    assert_eq!(answers, 2);
}
