//! A SOCKS5 UDP client for tests: the UDP ASSOCIATE on a control connection, datagrams
//! with their SOCKS header, and one exchange through the relay.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// A SOCKS5 UDP ASSOCIATE from `client`'s address; answers the control connection and the
/// relay address the proxy announced.
pub fn associate(proxy: SocketAddr, client: &UdpSocket) -> (TcpStream, SocketAddr) {
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

pub fn datagram(target: SocketAddr, payload: &[u8]) -> Vec<u8> {
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
pub fn exchange(
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

pub fn client_socket() -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client
}
