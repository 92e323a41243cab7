//! Scenario: a basic user group behind an HTTP proxy, a SOCKS proxy and a reverse proxy, with
//! curl and raw sockets. Every token form takes its password and refuses another; each user
//! filter (ports, hosts, request types, user agents, the user's own ingress) permits and
//! denies; an expired user and a user without token never get in, a blocked one waits and is
//! refused; dynamic users follow their file while the proxy runs (a broken file keeps the last
//! good set), and a user blocked there loses its live tunnel. No password or token reaches
//! the process log. Users published with `g3proxy-ctl user-group NAME publish-user` reach
//! every worker and outlive a reload and a supervisor handoff. A user's `resolve_redirection`
//! holds directly, through SOCKS and through a `route_failover`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use g3proxy_proto::base64;
use g3proxy_tests::{Echo, Group, Origin, RecordingOrigin, curl_status, http_answer, wait_until};

/// Passwords the test uses; none may appear in any log.
const SECRETS: &[&str] = &["toor", "wrong-password", "dyn-secret"];

fn basic(user: &str, password: &str) -> String {
    base64::encode(format!("{user}:{password}").as_bytes())
}

/// The status of a GET through the HTTP proxy as `user:password` (no credentials: `None`).
fn via_http(group: &Group, login: Option<(&str, &str)>, url: &str, extra: &[&str]) -> String {
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let mut args = vec!["-x", &proxy];
    let joined;
    if let Some((user, password)) = login {
        joined = format!("{user}:{password}");
        args.extend(["-U", &joined]);
    }
    args.extend(extra);
    args.push(url);
    curl_status(&args)
}

/// The status of a GET through the SOCKS5 proxy (curl's exit code when the proxy refused).
fn via_socks(group: &Group, login: Option<(&str, &str)>, url: &str) -> String {
    let proxy = match login {
        Some((user, password)) => {
            format!(
                "socks5h://{user}:{password}@127.0.0.1:{}",
                group.port("socks")
            )
        }
        None => format!("socks5h://127.0.0.1:{}", group.port("socks")),
    };
    curl_status(&["-x", &proxy, url])
}

/// Opens a CONNECT tunnel as `user` and returns it after the proxy's answer head.
fn connect_as(
    proxy: SocketAddr,
    user: &str,
    password: &str,
    target: SocketAddr,
) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
        basic(user, password)
    );
    stream.write_all(request.as_bytes()).expect("send CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

fn write_dynamic(group: &Group, json: &str) {
    // Written beside and renamed: the refresh never reads a half-written file.
    let temporary = group.dir.join("dynamic.json.new");
    std::fs::write(&temporary, json).expect("write users");
    std::fs::rename(&temporary, group.dir.join("dynamic.json")).expect("rename users");
}

#[test]
fn users_log_in_and_their_filters_hold() {
    let origin = Origin::start("127.0.0.1");
    let recording = RecordingOrigin::start(http_answer("behind the gateway"), false);
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::with_ports(
        "users",
        &[
            ("origin", origin.addr.port()),
            ("recording", recording.addr.port()),
        ],
    );
    write_dynamic(&group, r#"[{"name": "dyn1", "token": null}]"#);
    // Verbose, into a file the test reads at the end.
    let log_path = group.dir.join("process.log");
    let log = File::create(&log_path).expect("log file");
    let mut command = group.supervisor_command();
    command.arg("-vv").stderr(Stdio::from(log));
    let child = command.spawn().expect("spawn g3proxy");
    let pid = child.id();
    group.adopt_child(child);
    group.wait_serving(pid);

    let url = origin.url("/");
    let ok = "200";
    // Every token form: the right password in, a wrong one out (407, with the challenge).
    for user in ["hashed", "md5crypt", "sha512crypt", "sha256crypt"] {
        assert_eq!(
            via_http(&group, Some((user, "toor")), &url, &[]),
            ok,
            "{user}"
        );
        assert_eq!(
            via_http(&group, Some((user, "wrong-password")), &url, &[]),
            "407",
            "{user}"
        );
        assert_eq!(via_socks(&group, Some((user, "toor")), &url), ok, "{user}");
        assert_ne!(
            via_socks(&group, Some((user, "wrong-password")), &url),
            ok,
            "{user}"
        );
    }
    assert_eq!(via_http(&group, Some(("open", "anything")), &url, &[]), ok);
    assert_eq!(via_http(&group, Some(("locked", "")), &url, &[]), "407");
    assert_eq!(via_http(&group, Some(("nobody", "toor")), &url, &[]), "407");
    assert_eq!(via_http(&group, None, &url, &[]), "407");
    assert_ne!(via_socks(&group, None, &url), ok);
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let challenge = g3proxy_tests::curl(&["-s", "-o", "/dev/null", "-D", "-", "-x", &proxy, &url]);
    assert!(
        challenge.contains("Proxy-Authenticate: Basic realm=\"staff only\"\r\n"),
        "{challenge}"
    );

    // Filters, each permitting and denying.
    let closed_port = format!(
        "http://127.0.0.1:{}/",
        g3proxy_tests::free_port("127.0.0.1")
    );
    assert_eq!(via_http(&group, Some(("ports", "")), &url, &[]), ok);
    assert_eq!(
        via_http(&group, Some(("ports", "")), &closed_port, &[]),
        "403"
    );
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    assert_eq!(via_http(&group, Some(("hosts", "")), &by_name, &[]), ok);
    assert_eq!(via_http(&group, Some(("hosts", "")), &url, &[]), "403");
    // Permitted by its subnet rule: nothing listens there, so the escaper's 5xx, not 403.
    let permitted = format!("http://127.0.0.2:{}/", origin.addr.port());
    assert_eq!(
        via_http(&group, Some(("hosts", "")), &permitted, &[]),
        "521"
    );
    for spelling in ["localhost", "LocalHost.", "localhost."] {
        let url = format!("http://{spelling}:{}/", origin.addr.port());
        assert_eq!(
            via_http(&group, Some(("denylist", "")), &url, &[]),
            "403",
            "{spelling}"
        );
    }
    assert_eq!(via_http(&group, Some(("denylist", "")), &url, &[]), ok);
    assert_eq!(via_http(&group, Some(("noconnect", "")), &url, &[]), ok);
    assert_eq!(
        via_http(&group, Some(("noconnect", "")), &url, &["-p"]),
        "curl exit Some(56)"
    );
    assert_ne!(via_socks(&group, Some(("noconnect", "")), &url), ok);
    assert_eq!(via_http(&group, Some(("nocurl", "")), &url, &[]), "403");
    assert_eq!(
        via_http(&group, Some(("nocurl", "")), &url, &["-A", "Mozilla/5.0"]),
        ok
    );
    assert_eq!(via_http(&group, Some(("expired", "")), &url, &[]), "407");
    assert_eq!(via_http(&group, Some(("elsewhere", "")), &url, &[]), "407");
    let started = Instant::now();
    assert_eq!(via_http(&group, Some(("blocked", "")), &url, &[]), "403");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // resolve_redirection: the name goes where the user's rule says; the request still
    // names it.
    let recording_port = recording.addr.port();
    for host in ["origin.test", "alias.test"] {
        let url = format!("http://{host}:{recording_port}/r");
        assert_eq!(
            via_http(&group, Some(("redirected", "")), &url, &[]),
            ok,
            "{host}"
        );
        let seen = recording.next_request();
        assert!(
            seen.contains(&format!("\r\nHost: {host}:{recording_port}\r\n")),
            "{seen}"
        );
    }
    let socks = format!("socks5h://redirected:x@127.0.0.1:{}", group.port("socks"));
    let by_socks = format!("http://origin.test:{recording_port}/s");
    assert_eq!(curl_status(&["-x", &socks, &by_socks]), ok);
    recording.next_request();
    // The same through a route_failover, whose legs connect themselves.
    let failover = format!("http://127.0.0.1:{}", group.port("failover_http"));
    let by_failover = format!("http://origin.test:{recording_port}/f");
    assert_eq!(
        curl_status(&["-x", &failover, "-U", "redirected:", &by_failover]),
        ok
    );
    recording.next_request();

    // A per-connection speed limit: 300 KB take three slices.
    let started = Instant::now();
    let big = origin.url("/bytes/300000");
    assert_eq!(via_http(&group, Some(("slow", "")), &big, &[]), ok);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(15),
        "300 KB at 100 KB a slice took {took:?}"
    );

    // The anonymous user: no credentials needed, its own filters apply, SOCKS4 too.
    let guests = format!("http://127.0.0.1:{}", group.port("guests_http"));
    assert_eq!(curl_status(&["-x", &guests, &url]), ok);
    assert_eq!(curl_status(&["-x", &guests, &closed_port]), "403");
    for scheme in ["socks4a", "socks5h"] {
        let socks = format!("{scheme}://127.0.0.1:{}", group.port("guests_socks"));
        assert_eq!(curl_status(&["-x", &socks, &url]), ok, "{scheme}");
        assert_ne!(curl_status(&["-x", &socks, &closed_port]), ok, "{scheme}");
    }
    // SOCKS4 cannot carry a password: without an anonymous user it is not served.
    let staff_socks4 = format!("socks4a://127.0.0.1:{}", group.port("socks"));
    assert_ne!(curl_status(&["-x", &staff_socks4, &url]), ok);

    // The gateway asks with 401 and keeps the credentials to itself.
    let gateway = format!("http://127.0.0.1:{}/", group.port("gateway"));
    assert_eq!(curl_status(&[&gateway]), "401");
    let login = "hashed:toor";
    assert_eq!(curl_status(&["-u", login, &gateway]), ok);
    let seen = recording.next_request();
    assert!(
        !seen.to_ascii_lowercase().contains("authorization"),
        "{seen}"
    );

    // Dynamic users follow their file; a static user wins a name clash.
    assert_eq!(via_http(&group, Some(("dyn1", "x")), &url, &[]), ok);
    let token = r#"{"salt": "113323bdab6fd2cc", "md5": "5c81f2becadde7fa5fde9026652ccc84"}"#;
    write_dynamic(
        &group,
        &format!(r#"[{{"name": "dyn2", "token": {token}}}, {{"name": "hashed", "token": null}}]"#),
    );
    wait_until(Duration::from_secs(10), "dyn2 to appear", || {
        (via_http(&group, Some(("dyn2", "toor")), &url, &[]) == ok).then_some(())
    });
    assert_eq!(via_http(&group, Some(("dyn1", "x")), &url, &[]), "407");
    assert_eq!(
        via_http(&group, Some(("hashed", "dyn-secret")), &url, &[]),
        "407"
    );
    // A broken file changes nothing.
    write_dynamic(&group, "[{\"name\": ");
    wait_until(
        Duration::from_secs(10),
        "the broken file to be refused",
        || {
            let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
            logged.contains("keeping the last good set").then_some(())
        },
    );
    assert_eq!(via_http(&group, Some(("dyn2", "toor")), &url, &[]), ok);

    // A tunnel of a user that the file then blocks ends at the next idle checks.
    let (mut tunnel, answer) = connect_as(group.http_proxy(), "dyn2", "toor", echo.addr);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tunnel.write_all(b"ping").expect("send");
    let mut back = [0u8; 4];
    tunnel.read_exact(&mut back).expect("echo");
    write_dynamic(
        &group,
        &format!(r#"[{{"name": "dyn2", "token": {token}, "block_and_delay": "1s"}}]"#),
    );
    let blocked_at = Instant::now();
    let mut rest = Vec::new();
    let _ = tunnel.read_to_end(&mut rest);
    assert!(
        blocked_at.elapsed() < Duration::from_secs(5),
        "the blocked user's tunnel lived on"
    );

    // Nothing secret in the process log.
    let logged = std::fs::read_to_string(&log_path).expect("read log");
    assert!(
        logged.contains("wrong password"),
        "the log has no login failures:\n{logged}"
    );
    for secret in SECRETS
        .iter()
        .copied()
        .chain(["5c81f2becadde7fa5fde9026652ccc84", "DJNIbbMpjjSmral92rE3k1"])
    {
        assert!(!logged.contains(secret), "the log shows {secret:?}");
    }
    if std::env::var_os("USERS_TEST_SHOW_LOG").is_some() {
        eprintln!("{logged}");
    }
    drop(group);
}

fn ctl_text(group: &Group, args: &[&str]) -> String {
    let output = group.ctl(args);
    assert!(
        output.status.success(),
        "ctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn published_users_outlive_reload_and_handoff() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::with_ports("users", &[("origin", origin.addr.port())]);
    write_dynamic(&group, "[]");
    let old = group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("guests_http"));
    let url = origin.url("/");
    let status = |login: &str| curl_status(&["-x", &proxy, "-U", login, &url]);
    // An unknown name is the anonymous user, whatever the password.
    assert_eq!(status("pub1:wrong-password"), "200");

    let file = group.dir.join("publish.json");
    std::fs::write(
        &file,
        r#"[{"name": "pub1", "token": {"salt": "113323bdab6fd2cc", "md5": "5c81f2becadde7fa5fde9026652ccc84"}}]"#,
    )
    .expect("write users");
    let file = file.to_str().expect("utf-8 path");
    assert_eq!(
        ctl_text(&group, &["user-group", "guests", "publish-user", file]),
        "notice: success\n"
    );
    let published = || {
        assert_eq!(status("pub1:toor"), "200");
        assert_eq!(status("pub1:wrong-password"), "407");
    };
    published();
    assert_eq!(
        ctl_text(&group, &["user-group", "guests", "list-dynamic-user"]),
        "pub1\n"
    );
    assert!(
        ctl_text(&group, &["user-group", "staff", "list-static-user"])
            .starts_with("hashed\nmd5crypt\n")
    );
    // A file that is no user list is refused by the ctl itself, naming the file.
    std::fs::write(group.dir.join("bad.json"), "{\"name\": 1}").expect("write");
    let bad = group.dir.join("bad.json");
    let refused = group.ctl(&[
        "user-group",
        "guests",
        "publish",
        bad.to_str().expect("path"),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("bad.json"));
    // The cache file holds them, readable by us alone.
    let cache = group.dir.join("guests-published.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cache).expect("cache").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the cache is private");

    ctl_text(&group, &["reload"]);
    published();

    // A successor supervisor takes the group over and keeps them.
    let new = group.spawn_supervisor();
    wait_until(Duration::from_secs(30), "the successor to serve", || {
        let fleet = group.fleet_of(None)?;
        (fleet["supervisor_pid"] == new).then_some(())
    });
    assert!(group.wait_exit(old, Duration::from_secs(30)));
    published();
}

#[test]
fn passphrase_hash_makes_tokens_that_log_in() {
    let mut child = std::process::Command::new(g3proxy_tests::bin("g3proxy-ctl"))
        .arg("passphrase-hash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("g3proxy-ctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("password");
    let output = child.wait_with_output().expect("token");
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(token.starts_with("token:\n  salt: "), "{token}");
    assert!(!token.contains("s3cret"));
    let origin = Origin::start("127.0.0.1");
    let text = format!(
        "resolver:\n  - name: default\n    type: c-ares\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: default\n    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}\nuser_group:\n  - name: made\n    static_users:\n      - name: maker\n{}server:\n  - name: http\n    type: http_proxy\n    escaper: default\n    user_group: made\n    listen: \"127.0.0.1:{{{{http_port}}}}\"\n",
        token
            .lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let url = origin.url("/");
    assert_eq!(
        curl_status(&["-x", &proxy, "-U", "maker:s3cret", &url]),
        "200"
    );
    assert_eq!(
        curl_status(&["-x", &proxy, "-U", "maker:s3cres", &url]),
        "407"
    );
}

/// Whether a CONNECT as `user` is answered 200 (the tunnel is returned) or refused.
fn tunnel_as(group: &Group, user: &str, target: SocketAddr) -> Result<TcpStream, String> {
    let (stream, answer) = connect_as(group.http_proxy(), user, "x", target);
    match answer.starts_with("HTTP/1.1 200") {
        true => Ok(stream),
        false => Err(answer),
    }
}

#[test]
fn limits_hold_across_workers_generations_and_crashes() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("user_limits");
    group.start();
    let url = origin.url("/");

    // request_alive_max: 2 live requests over both workers; the third is refused with 429.
    let first = tunnel_as(&group, "capped", echo.addr).expect("first tunnel");
    let second = tunnel_as(&group, "capped", echo.addr).expect("second tunnel");
    for _ in 0..4 {
        let refused = tunnel_as(&group, "capped", echo.addr).expect_err("a third tunnel");
        assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    }
    // So does SOCKS, which counts in the same place.
    let socks = format!("socks5h://capped:x@127.0.0.1:{}", group.port("socks"));
    assert_ne!(curl_status(&["-x", &socks, &url]), "200");

    // After a reload the two tunnels live on in the draining generation, and still count.
    let old_workers = group.worker_pids("current");
    let output = group.ctl(&["reload"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // (A draining worker that holds no tunnel may be gone already.)
    assert!(!group.worker_pids("draining").is_empty());
    let refused = tunnel_as(&group, "capped", echo.addr).expect_err("a third tunnel");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    // One ends: its place is free for a request of the new generation.
    drop(first);
    let third = wait_until(
        Duration::from_secs(10),
        "a place freed by the old generation",
        || tunnel_as(&group, "capped", echo.addr).ok(),
    );
    // The draining workers die holding the other tunnel: the supervisor gives its place back.
    for pid in &old_workers {
        g3proxy_tests::group::kill(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    drop(second);
    let fourth = wait_until(Duration::from_secs(10), "the dead workers' places", || {
        tunnel_as(&group, "capped", echo.addr).ok()
    });
    assert!(tunnel_as(&group, "capped", echo.addr).is_err());
    drop((third, fourth));

    // A reload that blocks a user ends its tunnel in the draining generation too.
    let mut held = tunnel_as(&group, "soon_blocked", echo.addr).expect("tunnel");
    let config = std::fs::read_to_string(&group.config).expect("config");
    let blocked = config.replace(
        "      - name: soon_blocked\n        token: ~\n",
        "      - name: soon_blocked\n        token: ~\n        block_and_delay: 1s\n",
    );
    assert_ne!(config, blocked);
    std::fs::write(&group.config, blocked).expect("write config");
    let output = group.ctl(&["reload"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reloaded = Instant::now();
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    assert!(
        reloaded.elapsed() < Duration::from_secs(5),
        "the blocked user's tunnel lived on in the draining generation"
    );

    // request_rate_limit 3/h over both workers: three requests, then 429 (each curl is a new
    // connection, spread over the workers).
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let statuses: Vec<String> = (0..6)
        .map(|_| curl_status(&["-x", &proxy, "-U", "rated:x", &url]))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "200").count(),
        3,
        "{statuses:?}"
    );
    assert!(statuses[3..].iter().all(|s| s == "429"), "{statuses:?}");
    // tcp_all_download_speed_limit 200K/s over both workers: two downloads of 400 KB at once
    // share it (800 KB less the 200 KB burst: about 3 s), where each alone would get it all.
    let started = Instant::now();
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            let (proxy, url) = (proxy.clone(), origin.url("/bytes/400000"));
            std::thread::spawn(move || {
                g3proxy_tests::curl(&[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-x",
                    &proxy,
                    "-U",
                    "throttled:x",
                    &url,
                ])
            })
        })
        .collect();
    for download in downloads {
        download.join().expect("download");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2200) && took < Duration::from_secs(15),
        "two throttled downloads took {took:?}"
    );

    // connection_rate_limit 2/h: two connections log in, the third does not.
    let statuses: Vec<String> = (0..4)
        .map(|_| curl_status(&["-x", &proxy, "-U", "connections:x", &url]))
        .collect();
    assert_eq!(statuses, ["200", "200", "429", "429"]);
}

/// A SOCKS5 UDP association as `user` (any password) from `client`: the control connection
/// and the relay address.
fn udp_associate_as(
    proxy: SocketAddr,
    user: &str,
    client: &std::net::UdpSocket,
) -> (TcpStream, SocketAddr) {
    let mut control = TcpStream::connect(proxy).expect("connect");
    control
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    control.write_all(&[5, 1, 2]).expect("greeting");
    let mut answer = [0u8; 2];
    control.read_exact(&mut answer).expect("method");
    assert_eq!(answer, [5, 2]);
    let mut login = vec![1, user.len() as u8];
    login.extend_from_slice(user.as_bytes());
    login.extend_from_slice(&[1, b'x']);
    control.write_all(&login).expect("login");
    control.read_exact(&mut answer).expect("login answer");
    assert_eq!(answer, [1, 0]);
    let local = client.local_addr().expect("client address");
    let std::net::IpAddr::V4(ip) = local.ip() else {
        panic!("ipv4 client")
    };
    let mut request = vec![5, 3, 0, 1];
    request.extend_from_slice(&ip.octets());
    request.extend_from_slice(&local.port().to_be_bytes());
    control.write_all(&request).expect("associate");
    let mut reply = [0u8; 10];
    control.read_exact(&mut reply).expect("reply");
    assert_eq!(reply[..4], [5, 0, 0, 1], "{reply:?}");
    let relay = SocketAddr::from((
        [reply[4], reply[5], reply[6], reply[7]],
        u16::from_be_bytes([reply[8], reply[9]]),
    ));
    (control, relay)
}

#[test]
fn udp_limits_hold_over_a_users_sessions() {
    let echo = g3proxy_tests::UdpEcho::start();
    let mut group = Group::new("user_limits");
    group.start();
    let proxy = SocketAddr::from(([127, 0, 0, 1], group.port("socks")));
    let std::net::IpAddr::V4(ip) = echo.addr.ip() else {
        panic!("ipv4 echo")
    };
    let mut answers = 0;
    // Two sessions of the user, three datagrams each: two go up in all.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        client
            .set_read_timeout(Some(Duration::from_millis(800)))
            .expect("timeout");
        let (control, relay) = udp_associate_as(proxy, "udp_limited", &client);
        for i in 0..3u8 {
            let mut datagram = vec![0, 0, 0, 1];
            datagram.extend_from_slice(&ip.octets());
            datagram.extend_from_slice(&echo.addr.port().to_be_bytes());
            datagram.push(i);
            client.send_to(&datagram, relay).expect("send");
        }
        let mut buffer = [0u8; 64];
        while client.recv(&mut buffer).is_ok() {
            answers += 1;
        }
        sessions.push((control, client));
    }
    assert_eq!(answers, 2);
}

#[test]
fn a_user_may_bring_its_own_udp_mode_and_response_timeout() {
    let (one, two) = (
        g3proxy_tests::UdpEcho::start(),
        g3proxy_tests::UdpEcho::start(),
    );
    let mut group = Group::new("user_limits");
    group.start();
    // The server keeps to "udp connect"; this user's session relays to two targets.
    let proxy = SocketAddr::from(([127, 0, 0, 1], group.port("socks")));
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (_control, relay) = udp_associate_as(proxy, "own_ways", &client);
    for echo in [one.addr, two.addr] {
        let std::net::IpAddr::V4(ip) = echo.ip() else {
            panic!("ipv4 echo")
        };
        let mut datagram = vec![0, 0, 0, 1];
        datagram.extend_from_slice(&ip.octets());
        datagram.extend_from_slice(&echo.port().to_be_bytes());
        datagram.extend_from_slice(b"hi");
        client.send_to(&datagram, relay).expect("send");
        let mut buffer = [0u8; 64];
        let length = client
            .recv(&mut buffer)
            .expect("an answer from each target");
        assert_eq!(&buffer[length - 2..length], b"hi");
    }
    // An upstream that never answers: this user gives up after its own 300 ms (504).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", silent.local_addr().expect("address"));
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let started = Instant::now();
    assert_eq!(
        curl_status(&["-x", &proxy, "-U", "own_ways:x", &url]),
        "504"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}
