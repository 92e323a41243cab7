//! Scenario: TLS on both sides with certificates the test makes. curl through an HTTPS proxy
//! (`--proxy https://`), https forward (`GET https://…` in plain text) to an origin signed by
//! the test CA, a `plain_tls_port` in front of an HTTP proxy, and mTLS checked with
//! `openssl s_client` with and without a client certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use g3proxy_tests::group::{kill, process_alive};
use g3proxy_tests::{
    Certs, Echo, Group, Origin, TlsOrigin, Until, curl, pattern_byte, s_client, try_curl,
    wait_until,
};

fn tls_group() -> (Group, Certs) {
    let mut group = Group::new("tls");
    let certs = Certs::make(&group.dir);
    group.start();
    (group, certs)
}

fn raw_request(proxy: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn curl_through_an_https_proxy_and_a_tls_port() {
    let origin = Origin::start("127.0.0.1");
    let (group, certs) = tls_group();
    let ca = certs.path("ca.pem");
    for port in ["https", "tlsport"] {
        let proxy = format!("https://localhost:{}", group.port(port));
        let body = curl(&[
            "--proxy",
            &proxy,
            "--proxy-cacert",
            ca.to_str().unwrap(),
            &origin.url("/"),
        ]);
        assert_eq!(body, "hello", "through {port}");
    }
    // Transfers that fill the socket and TLS buffers on the way, tunnelled and forwarded:
    // every byte arrives, in order.
    let size = 48 << 20;
    let want: Vec<u8> = (0..size).map(pattern_byte).collect();
    let saved = certs.path("download");
    for tunnel in [true, false] {
        let proxy = format!("https://localhost:{}", group.port("https"));
        let url = origin.url(&format!("/bytes/{size}"));
        let mut args = vec!["--proxy", &proxy, "--proxy-cacert", ca.to_str().unwrap()];
        if tunnel {
            args.push("-p");
        }
        args.extend(["-o", saved.to_str().unwrap(), &url]);
        curl(&args);
        let got = std::fs::read(&saved).expect("downloaded file");
        assert_eq!(got.len(), want.len(), "tunnel {tunnel}");
        assert!(got == want, "tunnel {tunnel}: bytes differ");
    }
    // A client that does not trust our CA refuses the proxy.
    let output = try_curl(&[
        "--proxy",
        &format!("https://localhost:{}", group.port("https")),
        &origin.url("/"),
    ]);
    assert!(!output.status.success());
}

#[test]
fn https_forward_speaks_tls_to_the_origin() {
    let (group, certs) = tls_group();
    let origin = TlsOrigin::start(certs.server_config());
    let request = format!(
        "GET https://localhost:{}/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        origin.addr.port()
    );
    // The HTTPS proxy trusts the test CA (tls_client.ca_certificate) ...
    let https = SocketAddr::from(([127, 0, 0, 1], group.port("https")));
    let answer = {
        let tcp = TcpStream::connect(https).unwrap();
        tls_exchange(tcp, &certs, &request)
    };
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello over tls"),
        "{answer}"
    );
    // ... the plain one uses the system's CAs, which do not know it: 525.
    let http = SocketAddr::from(([127, 0, 0, 1], group.port("http")));
    let answer = raw_request(http, &request);
    assert!(answer.starts_with("HTTP/1.1 525"), "{answer}");
}

/// One request over TLS to our proxy, as a client trusting the test CA.
fn tls_exchange(tcp: TcpStream, certs: &Certs, request: &str) -> String {
    let mut tls = certs.tls_client(tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn mtls_port_requires_a_client_certificate() {
    let origin = Origin::start("127.0.0.1");
    let (group, certs) = tls_group();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url("/"),
        origin.addr
    );
    let with = s_client(group.port("mtls"), &certs, true, &request, Until::Close);
    assert!(with.contains("200 OK") && with.ends_with("hello"), "{with}");
    let without = s_client(group.port("mtls"), &certs, false, &request, Until::Close);
    assert!(!without.contains("hello"), "{without}");
}

/// Reloads and a worker crash with TLS listeners: new TLS clients are served throughout and a
/// TLS tunnel opened before them keeps flowing.
#[test]
fn reloads_and_a_crash_keep_tls_clients_served() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    let (group, certs) = tls_group();
    let https = SocketAddr::from(([127, 0, 0, 1], group.port("https")));
    let mut tunnel = certs.tls_client(TcpStream::connect(https).unwrap());
    write!(
        tunnel,
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        echo.addr, echo.addr
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tunnel.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roundtrip = |message: &[u8]| {
        tunnel.write_all(message).unwrap();
        let mut back = vec![0u8; message.len()];
        tunnel.read_exact(&mut back).unwrap();
        assert_eq!(back, message);
    };
    roundtrip(b"before");
    let ca = certs.path("ca.pem");
    let through = |port: &str| {
        curl(&[
            "--proxy",
            &format!("https://localhost:{}", group.port(port)),
            "--proxy-cacert",
            ca.to_str().unwrap(),
            &origin.url("/"),
        ])
    };
    let generation = group.current_generation();
    for round in 0..3 {
        let output = group.ctl(&["reload"]);
        assert!(output.status.success(), "reload {round}: {output:?}");
        assert_eq!(through("https"), "hello");
        assert_eq!(through("tlsport"), "hello");
    }
    assert_eq!(group.current_generation(), generation + 3);
    let victim = group.worker_pids("current")[0];
    kill(victim, nix::sys::signal::Signal::SIGKILL);
    wait_until(Duration::from_secs(30), "a replacement worker", || {
        (!process_alive(victim) && group.worker_pids("current").iter().any(|p| *p != victim))
            .then_some(())
    });
    assert_eq!(through("https"), "hello");
    roundtrip(b"after the reloads and the crash");
}
