//! Scenario: the stream servers with real clients. tcp_stream takes turns over two upstreams
//! that answer differently, keeps a client on one of them by ketama, passes an upstream that
//! is down, and speaks TLS to an origin
//! signed by the test CA; tls_stream takes clients with a certificate and refuses those
//! without; a plain_tls_port in front of a tcp_stream (the guide's other form); and a long
//! tls_stream tunnel keeps flowing across reloads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use g3proxy_tests::{
    Certs, Echo, Group, RecordingOrigin, TlsOrigin, Until, curl, free_port, http_answer, s_client,
};

#[test]
fn stream_servers_with_real_clients() {
    let scratch = std::env::temp_dir().join(format!("g3proxy-streams-{}", std::process::id()));
    let certs = Certs::make(&scratch);
    let one = RecordingOrigin::start(http_answer("one"), false);
    let two = RecordingOrigin::start(http_answer("two"), false);
    let echo = Echo::start("127.0.0.1");
    let tls_origin = TlsOrigin::start(certs.server_config());
    let mut group = Group::with_ports(
        "streams",
        &[
            ("one", one.addr.port()),
            ("two", two.addr.port()),
            ("echo", echo.addr.port()),
            ("tls_origin", tls_origin.addr.port()),
            ("down", free_port("127.0.0.1")),
        ],
    );
    certs.copy_into(&group.dir);
    group.start();
    let url = |name: &str| format!("http://127.0.0.1:{}/", group.port(name));

    // Round robin: the two upstreams in turn.
    let answers: Vec<String> = (0..4).map(|_| curl(&[&url("rr")])).collect();
    assert_eq!(answers, ["one", "two", "one", "two"]);
    // Ketama on g3's key (client and server address): one client, always the same upstream,
    // and the other one only when it is down.
    let sticky: Vec<String> = (0..6).map(|_| curl(&[&url("sticky")])).collect();
    assert!(sticky.iter().all(|a| *a == sticky[0]), "{sticky:?}");
    assert!(sticky[0] == "one" || sticky[0] == "two", "{sticky:?}");
    // An upstream that refuses is passed for the next one, every time.
    for _ in 0..4 {
        assert_eq!(curl(&[&url("failover")]), "one");
    }
    // tcp_misc_opts on accepted connections, as the kernel reports them (`ss`).
    let tuned = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], group.port("tuned"))))
        .expect("connect");
    let mut tuned_roundtrip = tuned.try_clone().expect("clone");
    tuned_roundtrip.write_all(b"x").expect("write");
    let mut byte = [0u8; 1];
    tuned_roundtrip.read_exact(&mut byte).expect("echo");
    let filter = format!("( sport = :{} )", group.port("tuned"));
    let ss = Command::new("ss")
        .args(["-tien", "state", "established", &filter])
        .output()
        .expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(ss.contains(" reno "), "{ss}");
    // Setting a mark takes CAP_NET_ADMIN.
    if unsafe { libc::geteuid() } == 0 {
        assert!(ss.contains("fwmark:0x2a"), "{ss}");
    }
    drop(tuned);

    // TLS offloading: plain to us, TLS to the origin, checked against the test CA.
    assert_eq!(curl(&[&url("offload")]), "hello over tls");

    // tls_stream with client certificates, in front of an echo server.
    let tls_port = group.port("tls");
    assert_eq!(
        s_client(tls_port, &certs, true, "ping\n", Until::Bytes(5)),
        "ping\n"
    );
    assert_eq!(
        s_client(tls_port, &certs, false, "ping\n", Until::Bytes(5)),
        ""
    );
    // A plain_tls_port in front of a tcp_stream (no client certificate asked there).
    assert_eq!(
        s_client(
            group.port("tlsport"),
            &certs,
            false,
            "pong\n",
            Until::Bytes(5)
        ),
        "pong\n"
    );

    // A TLS stream tunnel opened before three reloads keeps flowing after them.
    let mut tunnel = {
        let tcp = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], group.port("tlsport"))))
            .expect("connect");
        certs.tls_client(tcp)
    };
    let mut roundtrip = |message: &[u8]| {
        tunnel.write_all(message).expect("write");
        let mut back = vec![0u8; message.len()];
        tunnel.read_exact(&mut back).expect("read");
        assert_eq!(back, message);
    };
    roundtrip(b"before the reloads");
    for round in 0..3 {
        let output = group.ctl(&["reload"]);
        assert!(output.status.success(), "reload {round}: {output:?}");
        assert_eq!(curl(&[&url("rr")]).len(), 3);
    }
    roundtrip(b"after the reloads");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The guide's tcp_stream, tls_stream and sni_proxy examples, as written there (certificate paths made
/// real), load with `g3proxy -t`; TLCP toward the upstream is refused plainly.
#[test]
fn the_guides_stream_and_sni_examples_load() {
    let dir = std::env::temp_dir().join(format!("g3proxy-stream-guide-{}", std::process::id()));
    let certs = Certs::make(&dir);
    let check = |servers: &str| {
        let text = format!(
            "resolver:\n  - name: default\n    type: c-ares\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: default\nserver:\n{servers}"
        );
        let path = dir.join("main.yml");
        std::fs::write(&path, text).expect("write config");
        Command::new(g3proxy_tests::bin("g3proxy"))
            .args(["-t", "-c"])
            .arg(&path)
            .output()
            .expect("g3proxy -t")
    };
    let cert = certs.path("server.pem");
    let key = certs.path("server.key");
    let (cert, key) = (cert.display(), key.display());
    let examples = [
        "- name: tcp\n  escaper: default\n  type: tcp_stream\n  listen:\n    address: \"[::1]:10086\"\n  proxy_pass:\n  - \"127.0.0.1:5201\"\n  - \"127.0.0.1:5202\"\n  upstream_pick_policy: rr\n".to_string(),
        "- name: tcp\n  escaper: default\n  type: tcp_stream\n  listen: \"[::1]:80\"\n  proxy_pass: \"127.0.0.1:443\"\n  tls_client: { }\n".to_string(),
        format!("- name: tls\n  escaper: default\n  type: tls_stream\n  listen:\n    address: \"[::1]:10443\"\n  tls_server:\n    cert_pairs:\n      certificate: {cert}\n      private_key: {key}\n    enable_client_auth: true\n  proxy_pass:\n  - \"127.0.0.1:5201\"\n  - \"127.0.0.1:5202\"\n  upstream_pick_policy: rr\n"),
        format!("- name: tcp\n  escaper: default\n  type: tcp_stream\n  proxy_pass:\n  - \"127.0.0.1:5201\"\n  - \"127.0.0.1:5202\"\n  upstream_pick_policy: rr\n- name: tls\n  type: plain_tls_port\n  listen:\n    address: \"[::1]:10443\"\n  tls_server:\n    cert_pairs:\n      certificate: {cert}\n      private_key: {key}\n    enable_client_auth: true\n  server: tcp\n"),
        // sni_proxy on 443 and, through a port entry, on 80 (the guide names the server
        // `sni_proxy` there, which loads with a warning, as in g3proxy).
        "- name: sni\n  escaper: default\n  type: sni_proxy\n  listen:\n    address: \"[::]:443\"\n- name: port80\n  type: plain_tcp_port\n  listen: \"[::]:80\"\n  server: sni_proxy\n".to_string(),
    ];
    for example in &examples {
        let output = check(example);
        assert!(
            output.status.success(),
            "{example}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tlcp = check(
        "- name: tcp\n  escaper: default\n  type: tcp_stream\n  listen: \"[::1]:10086\"\n  upstream: \"127.0.0.1:443\"\n  tls_client:\n    protocol: tlcp\n  upstream_tls_name: target.host.domain\n",
    );
    assert!(!tlcp.status.success());
    assert!(
        String::from_utf8_lossy(&tlcp.stderr).contains("built without TLCP"),
        "{}",
        String::from_utf8_lossy(&tlcp.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
