//! The configs under `examples/`: every one loads with `g3proxy -t` (with certificates made
//! where it names `tls/…` files), and the runnable ones serve real clients on loopback, their
//! ports swapped for free ones and their upstreams for the test's own servers.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use g3proxy_tests::{
    Certs, Group, Origin, RecordingOrigin, StatsdReceiver, TlsOrigin, curl, curl_status, free_port,
    http_answer, wait_until,
};

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
    assert!(checked >= 11, "only {checked} examples found");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Every file of an example, by its path inside the example.
fn example_files(dir: &Path, under: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            example_files(&path, under, files);
        } else {
            files.push(path.strip_prefix(under).expect("inside").to_path_buf());
        }
    }
}

/// A group running example `name`, each `127.0.0.1:PORT` of `ports` swapped for a free port
/// (or the `preset` one of the same name), in `main.yml` and every file beside it.
fn example_group(name: &str, ports: &[(u16, &str)], preset: &[(&str, u16)]) -> Group {
    let dir = examples_dir().join(name);
    let mut files = Vec::new();
    example_files(&dir, &dir, &mut files);
    let read = |file: &Path| std::fs::read_to_string(dir.join(file)).expect("example file");
    for (port, _) in ports {
        let fixed = format!("127.0.0.1:{port}\"");
        assert!(
            files.iter().any(|f| read(f).contains(&fixed)),
            "{name} has no {fixed}"
        );
    }
    let swap = |text: String, to: &dyn Fn(&str) -> String| {
        ports.iter().fold(text, |text, (port, placeholder)| {
            text.replace(
                &format!("127.0.0.1:{port}\""),
                &format!("127.0.0.1:{}\"", to(placeholder)),
            )
        })
    };
    // Every port chosen now, so that files beside main.yml get the same ones.
    let chosen: Vec<(&str, u16)> = ports
        .iter()
        .map(|(_, name)| {
            let preset = preset.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
            (*name, preset.unwrap_or_else(|| free_port("127.0.0.1")))
        })
        .collect();
    let main = swap(read(Path::new("main.yml")), &|p| {
        format!("{{{{{p}_port}}}}")
    });
    let group = Group::from_text(&main, &std::env::temp_dir(), &chosen);
    for file in files.iter().filter(|f| *f != Path::new("main.yml")) {
        let target = group.dir.join(file);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let text = swap(read(file), &|p| group.port(p).to_string());
        std::fs::write(target, text).expect("write");
    }
    group
}

/// What curl gets through `proxy` for `url`.
fn status_through(proxy: &str, url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-x", proxy];
    args.extend(extra);
    args.push(url);
    curl_status(&args)
}

#[test]
fn the_runnable_examples_serve() {
    let origin = Origin::start("127.0.0.1");

    // HTTP and SOCKS proxies.
    let mut group = example_group("http_socks", &[(13128, "http"), (11080, "socks")], &[]);
    group.start();
    let url = origin.url("/");
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    let socks = format!("socks5h://127.0.0.1:{}", group.port("socks"));
    assert_eq!(curl(&["-x", &http, &url]), "hello");
    assert_eq!(curl(&["-x", &socks, &url]), "hello");
    drop(group);

    // The reverse proxy: two sites by Host, the default for the rest.
    let one = RecordingOrigin::start(http_answer("one"), false);
    let mut group = example_group(
        "reverse_proxy",
        &[(8000, "gateway"), (8081, "one"), (8082, "two")],
        &[("one", one.addr.port()), ("two", origin.addr.port())],
    );
    group.start();
    let port = group.port("gateway");
    let get = |host: &str| {
        curl(&[
            "-u",
            "root:toor",
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("http://{host}:{port}/"),
        ])
    };
    let anonymous = format!("http://127.0.0.1:{port}/");
    assert_eq!(curl_status(&[&anonymous]), "401");
    assert_eq!(get("service1.example.net"), "one");
    assert!(one.next_request().contains("\r\nVia: 1.1 gateway-1\r\n"));
    assert_eq!(get("a.service2.example.net"), "hello");
    assert_eq!(get("elsewhere.example.org"), "hello");
    drop(group);

    // Users: the guide's root may only reach a few hosts on ports 80 and 443; the limited
    // user goes anywhere; the dynamic guest comes from the file beside the config.
    let mut group = example_group("users", &[(13128, "http"), (11080, "socks")], &[]);
    group.start();
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    let socks = |login: &str| format!("socks5h://{login}@127.0.0.1:{}", group.port("socks"));
    assert_eq!(status_through(&http, &url, &["-U", "root:toor"]), "403");
    assert_eq!(status_through(&http, &url, &["-U", "limited:toor"]), "200");
    assert_eq!(status_through(&http, &url, &["-U", "guest:toor"]), "200");
    assert_eq!(status_through(&http, &url, &["-U", "limited:root"]), "407");
    assert_eq!(status_through(&http, &url, &[]), "407");
    assert_eq!(status_through(&socks("limited:toor"), &url, &[]), "200");
    // The guest's request filter leaves out SOCKS.
    assert_ne!(status_through(&socks("guest:toor"), &url, &[]), "200");
    drop(group);

    // TCP mapping taking turns, and TLS offloading to an upstream of the test CA.
    let scratch = std::env::temp_dir().join(format!("g3proxy-ex-certs-{}", std::process::id()));
    let certs = Certs::make(&scratch);
    let tls_origin = TlsOrigin::start(certs.server_config());
    let two = RecordingOrigin::start(http_answer("two"), false);
    let mut group = example_group(
        "stream_tls",
        &[
            (10086, "tcp"),
            (10087, "offload"),
            (10443, "tls"),
            (5201, "one"),
            (5202, "two"),
            (5443, "tls_origin"),
        ],
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
    drop(group);

    // The split layout serves from its files; its escaper keeps g3's default egress filter,
    // so the test's loopback origin is refused (403, and SOCKS's "not allowed").
    let mut group = example_group("split_layout", &[(13128, "http"), (11080, "socks")], &[]);
    group.start();
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    let socks = format!("socks5h://127.0.0.1:{}", group.port("socks"));
    assert_eq!(status_through(&http, &url, &[]), "403");
    assert_eq!(status_through(&socks, &url, &[]), "curl exit Some(97)");
    drop(group);

    // SNI and several ports: a host outside allowed_hosts is refused on both of sni_proxy's
    // ports, and the HTTP proxy answers on its plain port, its TLS port and the port shared
    // with SOCKS (loopback targets refused there too).
    let mut group = example_group(
        "sni_multi_port",
        &[
            (8443, "sni"),
            (8080, "sni80"),
            (13128, "http"),
            (13129, "http_tls"),
            (13130, "http_pp"),
            (11080, "socks"),
            (18080, "both"),
        ],
        &[],
    );
    let tls_dir = group.dir.join("tls");
    std::fs::create_dir_all(&tls_dir).expect("tls dir");
    certs.copy_into(&tls_dir);
    group.start();
    for port in ["sni", "sni80"] {
        let port = group.port(port);
        let refused = curl_status(&[
            "--resolve",
            &format!("other.test:{port}:127.0.0.1"),
            &format!("http://other.test:{port}/"),
        ]);
        assert_eq!(refused, "403", "{port}");
    }
    let ca = certs.path("ca.pem");
    for (proxy, extra) in [
        (format!("http://127.0.0.1:{}", group.port("http")), vec![]),
        (
            format!("https://localhost:{}", group.port("http_tls")),
            vec!["--proxy-cacert", ca.to_str().unwrap()],
        ),
        (format!("http://127.0.0.1:{}", group.port("both")), vec![]),
    ] {
        assert_eq!(status_through(&proxy, &url, &extra), "403", "{proxy}");
    }
    let socks = format!("socks5h://127.0.0.1:{}", group.port("both"));
    assert_eq!(status_through(&socks, &url, &[]), "curl exit Some(97)");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The examples of later guide sections: egress published at run time, a user's own name
/// rules, metrics with extra tags, and per-thread listeners.
#[test]
fn the_newer_examples_serve() {
    let origin = Origin::start("127.0.0.1");
    let url = origin.url("/");

    // Dynamic route binding and proxy chaining: no way out until a program publishes one.
    let mut group = example_group(
        "dynamic_egress",
        &[(13128, "bound"), (13129, "chained")],
        &[],
    );
    group.start();
    let bound = format!("http://127.0.0.1:{}", group.port("bound"));
    let chained = format!("http://127.0.0.1:{}", group.port("chained"));
    assert_ne!(status_through(&bound, &url, &[]), "200");
    assert_ne!(status_through(&chained, &url, &[]), "200");
    let publish = |escaper: &str, data: &str| {
        let output = group.ctl(&["escaper", escaper, "publish", data]);
        assert!(
            output.status.success(),
            "{escaper}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    publish("float", r#"{"ipv4": "127.0.0.1"}"#);
    assert_eq!(curl(&["-x", &bound, &url]), "hello");
    // The chained server's peer is the bound one (a next proxy of the test's own).
    let peer = format!(
        r#"{{"type": "http", "addr": "127.0.0.1:{}", "expire": "2099-01-01T00:00:00Z"}}"#,
        group.port("bound")
    );
    publish("peers", &peer);
    assert_eq!(curl(&["-x", &chained, &url]), "hello");
    drop(group);

    // Name hijacking: the user's fixed name leads to the test's origin, under its own name.
    // (The other rules lead to names that the resolver asks the outside world for.)
    let mut group = example_group("name_hijacking", &[(13128, "http")], &[]);
    group.start();
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    let named = format!("http://t1.example.net:{}/", origin.addr.port());
    assert_eq!(curl(&["-x", &http, "-U", "tester:toor", &named]), "hello");
    assert_eq!(status_through(&http, &named, &["-U", "tester:nope"]), "407");
    drop(group);

    // Monitoring: the server's series carry its extra tag (logs go to a syslog and a
    // journal that this machine may not have: lost, and the proxy serves on).
    let statsd = StatsdReceiver::start();
    let mut group = example_group(
        "monitoring",
        &[(13128, "http"), (8125, "statsd")],
        &[("statsd", statsd.port)],
    );
    group.start();
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    assert_eq!(curl(&["-x", &http, &url]), "hello");
    wait_until(Duration::from_secs(10), "the task in the metrics", || {
        let tags = ["server:http", "service:example"];
        (statsd.total("g3proxy.server.task.total", &tags) == 1).then_some(())
    });
    drop(group);

    // Performance: pinned threads, a listener each.
    let mut group = example_group("performance", &[(13128, "http")], &[]);
    group.start();
    let http = format!("http://127.0.0.1:{}", group.port("http"));
    for _ in 0..4 {
        assert_eq!(curl(&["-x", &http, &url]), "hello");
    }
}
