//! Scenario: sni_proxy with TLS and plain HTTP on one port. curl reaches a TLS origin by SNI
//! and a plain origin by `Host` (an exact host and a child of a listed domain), each redirected
//! by `allowed_hosts`; a host not listed is refused (a 403 for HTTP, a close for TLS); a
//! ClientHello sent in several TCP segments and records reaches the upstream byte for byte;
//! garbage and a hello without SNI are closed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use g3proxy_proto::tls_hello::encode_client_hello;
use g3proxy_tests::{Certs, Echo, Group, Origin, TlsOrigin, curl, curl_status, try_curl};

#[test]
fn sni_and_host_routing_on_one_port() {
    let scratch = std::env::temp_dir().join(format!("g3proxy-sni-{}", std::process::id()));
    let certs = Certs::make(&scratch);
    let origin = Origin::start("127.0.0.1");
    let tls_origin = TlsOrigin::start(certs.server_config());
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::with_ports(
        "sni",
        &[
            ("origin", origin.addr.port()),
            ("tls_origin", tls_origin.addr.port()),
            ("echo", echo.addr.port()),
        ],
    );
    group.start();
    let port = group.port("sni");
    let resolve = |host: &str| format!("{host}:{port}:127.0.0.1");
    let ca = certs.path("ca.pem");

    // TLS by SNI, passed through: the origin's own certificate is what curl checks.
    let tls = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://localhost:{port}/"),
    ]);
    assert_eq!(tls, "hello over tls");
    // Plain HTTP by Host, exact and child matches.
    for host in ["plain.test", "www.example.test", "example.test"] {
        let body = curl(&[
            "--resolve",
            &resolve(host),
            &format!("http://{host}:{port}/"),
        ]);
        assert_eq!(body, "hello", "{host}");
    }
    // Not listed: a 403 for HTTP, a closed connection for TLS.
    let refused = curl_status(&[
        "--resolve",
        &resolve("other.test"),
        &format!("http://other.test:{port}/"),
    ]);
    assert_eq!(refused, "403");
    let refused = try_curl(&[
        "-k",
        "--resolve",
        &resolve("other.test"),
        &format!("https://other.test:{port}/"),
    ]);
    assert!(!refused.status.success());

    // A ClientHello in several records and TCP segments reaches the upstream as it was sent.
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let hello = encode_client_hello(Some("echo.test"), &[b"h2"], 100);
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for piece in hello.chunks(hello.len() / 3 + 1) {
        client.write_all(piece).expect("write");
        client.flush().expect("flush");
    }
    let mut echoed = vec![0u8; hello.len()];
    client
        .read_exact(&mut echoed)
        .expect("the hello echoed back");
    assert_eq!(echoed, hello);

    // Garbage and a hello without a name: closed, and the proxy serves on.
    for input in [
        b"\x16\x03\x01\x00\x05garbage-garbage".to_vec(),
        encode_client_hello(None, &[], 1 << 14),
        b"\x00\x01\x02\r\n\r\n".to_vec(),
    ] {
        let mut client = TcpStream::connect(address).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        client.write_all(&input).expect("write");
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{input:?} got {rest:?}");
    }
    assert_eq!(
        curl(&[
            "--resolve",
            &resolve("plain.test"),
            &format!("http://plain.test:{port}/")
        ]),
        "hello"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
