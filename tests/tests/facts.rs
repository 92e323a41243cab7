//! Scenario: facts user groups behind stream servers. A tcp_stream with `auth_by_client_ip`
//! finds the user by the client's address and applies its filters and its limit of live
//! streams over the relay's whole life; a group without a user
//! for the address closes the connection; an sni_proxy with `auth_by_server_name` lets in
//! only the names a user claims.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use g3proxy_tests::{Echo, Group, Origin, curl_status};

/// Whether a stream through `port` echoes (a refused connection is closed at once).
fn echoes(port: u16) -> bool {
    let mut stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    if stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).is_ok() && &back == b"ping"
}

#[test]
fn stream_servers_find_users_by_facts() {
    let echo = Echo::start("127.0.0.1");
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::with_ports(
        "facts",
        &[("echo", echo.addr.port()), ("origin", origin.addr.port())],
    );
    group.start();
    // The client's address is user `local`'s, whose port filter takes the echo server...
    assert!(echoes(group.port("echo_stream")));
    // One stream at a time. (The stream just closed frees its place once its relay ends:
    // try until one holds, proven by an echo through it.)
    let held = g3proxy_tests::wait_until(Duration::from_secs(10), "a stream to hold", || {
        let mut stream = TcpStream::connect(SocketAddr::from((
            [127, 0, 0, 1],
            group.port("echo_stream"),
        )))
        .ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream.write_all(b"held").ok()?;
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).ok()?;
        Some(stream)
    });
    assert!(!echoes(group.port("echo_stream")));
    drop(held);
    g3proxy_tests::wait_until(Duration::from_secs(10), "its place to be free", || {
        echoes(group.port("echo_stream")).then_some(())
    });
    // ...and not the origin.
    let through = format!("http://127.0.0.1:{}/", group.port("origin_stream"));
    assert_ne!(curl_status(&[&through]), "200");
    // No user claims the address, and the group has no anonymous user.
    assert!(!echoes(group.port("nobody_stream")));
    // By server name: `localhost` is user `site`'s; an address is nobody's.
    let sni = group.port("sni");
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", origin.addr.port());
    let proxy_as_target = format!("localhost:{}:127.0.0.1:{sni}", origin.addr.port());
    assert_eq!(
        curl_status(&[
            "--connect-to",
            &proxy_as_target,
            "--resolve",
            &resolve,
            &by_name
        ]),
        "200"
    );
    let by_address = format!("http://127.0.0.1:{}/", origin.addr.port());
    let address_to_proxy = format!("127.0.0.1:{}:127.0.0.1:{sni}", origin.addr.port());
    assert_ne!(
        curl_status(&["--connect-to", &address_to_proxy, &by_address]),
        "200"
    );
}
