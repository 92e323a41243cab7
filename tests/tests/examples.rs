//! The configs under `examples/`: every one loads with `g3proxy -t` (with certificates made
//! where it names `tls/…` files), and the runnable ones serve real clients on loopback, their
//! ports swapped for free ones and their upstreams for the test's own servers.

use std::path::{Path, PathBuf};
use std::process::Command;

use g3proxy_tests::{Certs, Group, Origin, RecordingOrigin, TlsOrigin, curl, http_answer};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn every_example_loads() {
    let scratch = std::env::temp_dir().join(format!("g3proxy-examples-{}", std::process::id()));
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir())
        .expect("examples")
        .flatten()
    {
        if !entry.path().join("main.yml").exists() {
            continue;
        }
        let copy = scratch.join(entry.file_name());
        copy_tree(&entry.path(), &copy);
        Certs::make(&copy.join("tls"));
        let output = Command::new(g3proxy_tests::bin("g3proxy"))
            .args(["-t", "-c"])
            .arg(copy.join("main.yml"))
            .output()
            .expect("g3proxy -t");
        assert!(
            output.status.success(),
            "{}: {}",
            entry.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} examples found");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// An example's `main.yml` with each `127.0.0.1:PORT` of `ports` made a placeholder.
fn runnable(name: &str, ports: &[(u16, &str)]) -> String {
    let mut text = std::fs::read_to_string(examples_dir().join(name).join("main.yml"))
        .expect("example main.yml");
    for (port, placeholder) in ports {
        let fixed = format!("127.0.0.1:{port}\"");
        assert!(text.contains(&fixed), "{name} has no {fixed}");
        text = text.replace(&fixed, &format!("127.0.0.1:{{{{{placeholder}_port}}}}\""));
    }
    text
}

#[test]
fn the_runnable_examples_serve() {
    let origin = Origin::start("127.0.0.1");

    // HTTP and SOCKS proxies.
    let text = runnable("http_socks", &[(13128, "http"), (11080, "socks")]);
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let url = origin.url("/");
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    let socks = format!("socks5h://127.0.0.1:{}", group.port("socks"));
    assert_eq!(curl(&["-x", &http, &url]), "hello");
    assert_eq!(curl(&["-x", &socks, &url]), "hello");
    drop(group);

    // The reverse proxy: two sites by Host, the default for the rest.
    let one = RecordingOrigin::start(http_answer("one"), false);
    let text = runnable(
        "reverse_proxy",
        &[(8000, "gateway"), (8081, "one"), (8082, "two")],
    );
    let mut group = Group::from_text(
        &text,
        &std::env::temp_dir(),
        &[("one", one.addr.port()), ("two", origin.addr.port())],
    );
    group.start();
    let port = group.port("gateway");
    let get = |host: &str| {
        curl(&[
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("http://{host}:{port}/"),
        ])
    };
    assert_eq!(get("service1.example.net"), "one");
    assert!(one.next_request().contains("\r\nVia: 1.1 gateway-1\r\n"));
    assert_eq!(get("a.service2.example.net"), "hello");
    assert_eq!(get("elsewhere.example.org"), "hello");
    drop(group);

    // TCP mapping taking turns, and TLS offloading to an upstream of the test CA.
    let scratch = std::env::temp_dir().join(format!("g3proxy-ex-certs-{}", std::process::id()));
    let certs = Certs::make(&scratch);
    let tls_origin = TlsOrigin::start(certs.server_config());
    let two = RecordingOrigin::start(http_answer("two"), false);
    let text = runnable(
        "stream_tls",
        &[
            (10086, "tcp"),
            (10087, "offload"),
            (10443, "tls"),
            (5201, "one"),
            (5202, "two"),
            (5443, "tls_origin"),
        ],
    );
    let mut group = Group::from_text(
        &text,
        &std::env::temp_dir(),
        &[
            ("one", one.addr.port()),
            ("two", two.addr.port()),
            ("tls_origin", tls_origin.addr.port()),
        ],
    );
    let tls_dir = group.dir.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    certs.copy_into(&tls_dir);
    group.start();
    let tcp = format!("http://127.0.0.1:{}/", group.port("tcp"));
    let turns: Vec<String> = (0..4).map(|_| curl(&[&tcp])).collect();
    assert_eq!(turns, ["one", "two", "one", "two"]);
    let offload = format!("http://127.0.0.1:{}/", group.port("offload"));
    assert_eq!(curl(&[&offload]), "hello over tls");
    // TLS encapsulation: TLS to us (checked against the test CA), plain to the upstream.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", group.port("tls"))).expect("connect");
    let mut tls = certs.tls_client(tcp);
    std::io::Write::write_all(&mut tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tls, &mut answer);
    assert!(answer.ends_with(b"\r\n\r\none"), "{answer:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}
