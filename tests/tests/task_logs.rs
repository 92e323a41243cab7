//! Scenario: task logs, one event as each task ends, with g3proxy's field names, through the
//! drivers operators point them at:
//! - `stdout`: as g3 writes it, sorted `key: value,` pairs then the message, on the worker's
//!   standard output;
//! - `syslog` over UDP into a real rsyslog (Debian's, started by the test on loopback), in
//!   RFC 3164 and RFC 5424 framing, which rsyslog parses into program and message;
//! - `journal`: journald's native protocol, on a socket the test listens on;
//! - `fluentd`: the forward protocol, into a receiver that decodes it with PyPI's `msgpack`.
//!
//! Checked on each: the fields of a proxied request and a `CONNECT` tunnel (server, task,
//! addresses, upstream, escaper, user, bytes, reason, times), a refused login's reason, and
//! that no password shows. Escape and resolve logs carry what failed: a refused connection
//! and a name the test zone (a real unbound) does not have.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use g3proxy_tests::{
    Certs, Echo, Group, Origin, PythonPeer, Unbound, curl, curl_status, free_port, roundtrip,
    wait_until,
};

/// The modules every case shares: a direct escaper, a user `hop` (password "toor"), an HTTP
/// proxy that logs its users in. `{log}` is the log section under test.
fn config(log: &str) -> String {
    format!(
        "log: {log}\nescaper:\n  - {{name: direct, type: direct_fixed, resolver: none, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}\nuser_group:\n  - name: users\n    static_users:\n      - name: hop\n        token: {{salt: 113323bdab6fd2cc, md5: 5c81f2becadde7fa5fde9026652ccc84, sha1: ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96}}\nserver:\n  - {{name: http, type: http_proxy, escaper: direct, user_group: users, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n"
    )
}

/// Traffic with known logs: a request, a tunnel of 1000 bytes each way, a wrong password.
fn traffic(group: &Group, origin: &Origin, echo: &Echo) {
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    assert_eq!(
        curl(&["-x", &proxy, "-U", "hop:toor", &origin.url("/")]),
        "hello"
    );
    let connect = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Basic aG9wOnRvb3I=\r\n\r\n",
        echo.addr, echo.addr
    );
    let mut tunnel = open_connect_tunnel_with(group, &connect);
    roundtrip(&mut tunnel, &[b'x'; 1000]);
    drop(tunnel);
    assert_eq!(
        curl_status(&["-x", &proxy, "-U", "hop:secret-password", &origin.url("/")]),
        "407"
    );
}

/// A CONNECT tunnel with our own request head (a login in it).
fn open_connect_tunnel_with(group: &Group, request: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", group.port("http"))).expect("connect");
    stream.write_all(request.as_bytes()).expect("CONNECT");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("CONNECT answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// What every case checks of the three events, found by their fields.
fn check_events(events: &[BTreeMap<String, String>], group: &Group, echo: &Echo) {
    let everything = format!("{events:?}");
    assert!(!everything.contains("toor") && !everything.contains("secret-password"));
    let find = |reason: &str| {
        events
            .iter()
            .find(|e| e.get("reason").map(String::as_str) == Some(reason))
            .unwrap_or_else(|| panic!("an event with reason {reason} in {events:?}"))
    };
    let tunnel = events
        .iter()
        .find(|e| e.get("upstream") == Some(&echo.addr.to_string()))
        .unwrap_or_else(|| panic!("the tunnel's event in {events:?}"));
    for key in [
        "server_type",
        "server_name",
        "task_type",
        "task_id",
        "stage",
        "start_at",
        "user",
        "escaper",
        "reason",
        "server_addr",
        "client_addr",
        "upstream",
        "next_bound_addr",
        "next_peer_addr",
        "c_rd_bytes",
        "c_wr_bytes",
        "r_rd_bytes",
        "r_wr_bytes",
        "ready_time",
        "total_time",
        "daemon_name",
        "pid",
        "log_type",
    ] {
        assert!(tunnel.contains_key(key), "{key} missing from {tunnel:?}");
    }
    assert_eq!(tunnel["server_type"], "HttpProxy");
    assert_eq!(tunnel["server_name"], "http");
    assert_eq!(tunnel["task_type"], "TcpConnect");
    assert_eq!(tunnel["task_id"].len(), 32);
    assert_eq!(tunnel["user"], "hop");
    assert_eq!(tunnel["escaper"], "direct");
    assert_eq!(tunnel["log_type"], "Task");
    assert_eq!(tunnel["daemon_name"], group.name);
    assert_eq!(
        tunnel["server_addr"],
        format!("127.0.0.1:{}", group.port("http"))
    );
    assert_eq!(tunnel["c_rd_bytes"], "1000");
    assert_eq!(tunnel["r_rd_bytes"], "1000");
    assert_eq!(tunnel["reason"], "ClosedByClient");
    assert!(tunnel["start_at"].ends_with('Z'), "{}", tunnel["start_at"]);
    let request = events
        .iter()
        .find(|e| {
            e.get("task_type").map(String::as_str) == Some("HttpForward")
                && e.get("reason").map(String::as_str) == Some("Finished")
        })
        .unwrap_or_else(|| panic!("the request's own event in {events:?}"));
    assert_eq!(request["method"], "GET");
    assert!(request["uri"].ends_with("/"), "{request:?}");
    assert_eq!(request["rsp_status"], "200");
    assert!(request["user_agent"].starts_with("curl"), "{request:?}");
    assert_eq!(request["user"], "hop");
    let refused = find("ClientAuthFailed");
    assert!(!refused.contains_key("upstream"), "{refused:?}");
}

/// `k: v, k: v` (stdout) or `k="v", k=1` (syslog) pairs, quotes taken off.
fn pairs(text: &str, separator: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once(separator) {
        let key = key.trim_start_matches([',', ' ']).to_string();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut end = 0;
                let bytes = quoted.as_bytes();
                while end < bytes.len()
                    && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
                {
                    end += 1;
                }
                (
                    quoted[..end].to_string(),
                    quoted.get(end + 1..).unwrap_or(""),
                )
            }
            None => match after.split_once(", ") {
                Some((value, next)) => (value.to_string(), next),
                None => (after.to_string(), ""),
            },
        };
        fields.insert(key, value);
        rest = next;
    }
    fields
}

/// The events of `log_type` among stdout lines (`<time> INFO k: v, …`), once there are
/// `count` of them.
fn stdout_events(
    lines: &Mutex<Vec<String>>,
    log_type: &str,
    count: usize,
) -> Vec<BTreeMap<String, String>> {
    let tag = format!(" log_type: {log_type},");
    wait_until(
        Duration::from_secs(10),
        &format!("{count} {log_type} log lines"),
        || {
            let lines = lines.lock().unwrap();
            let events: Vec<BTreeMap<String, String>> = lines
                .iter()
                .filter(|l| l.contains(&tag))
                .map(|line| {
                    let (_, fields) = line.split_once(" INFO ").expect("a stdout log line");
                    pairs(fields, ": ")
                })
                .collect();
            (events.len() >= count).then_some(events)
        },
    )
}

#[test]
fn stdout_lines_carry_every_field() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let (group, lines) = Group::start_with_stdout(&config("stdout"));
    traffic(&group, &origin, &echo);
    check_events(&stdout_events(&lines, "Task", 3), &group, &echo);
}

/// `flush_task_log_on_created` and `_connected`: a forwarded request and a tunnel each log
/// as they start and once connected, with `task_event` and `stage`, and then as they end
/// (no `task_event`); all three events of a task share its id. With
/// `task_log_flush_interval`, an open tunnel logs its bytes so far (`Periodic`).
#[test]
fn created_connected_and_periodic_events() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let text = config("stdout").replace(
        "user_group: users, listen:",
        "user_group: users, flush_task_log_on_created: true, flush_task_log_on_connected: true, task_log_flush_interval: 100ms, listen:",
    );
    let (group, lines) = Group::start_with_stdout(&text);
    traffic(&group, &origin, &echo);
    // A request and a tunnel: three events each; the refused login: created, then ended.
    // The request: created, connected, ended. The tunnel: created (as the connection turns
    // into one), connected, ended. The refused login: ended only.
    let events = stdout_events(&lines, "Task", 7);
    for task_type in ["HttpForward", "TcpConnect"] {
        let finished = events
            .iter()
            .find(|e| e["task_type"] == task_type && e.get("upstream").is_some())
            .unwrap_or_else(|| panic!("a {task_type} task: {events:?}"));
        let of_task: Vec<&BTreeMap<String, String>> = events
            .iter()
            .filter(|e| e["task_id"] == finished["task_id"])
            .filter(|e| e.get("task_event").is_none_or(|t| t != "Periodic"))
            .collect();
        let stages: Vec<(Option<&str>, &str)> = of_task
            .iter()
            .map(|e| (e.get("task_event").map(String::as_str), e["stage"].as_str()))
            .collect();
        assert_eq!(
            stages,
            [
                (Some("Created"), "Created"),
                (Some("Connected"), "Connected"),
                (None, "Finished")
            ],
            "{task_type}: {of_task:?}"
        );
    }
    // A tunnel that stays open logs its bytes so far every task_log_flush_interval.
    let connect = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Basic aG9wOnRvb3I=\r\n\r\n",
        echo.addr, echo.addr
    );
    let mut tunnel = open_connect_tunnel_with(&group, &connect);
    roundtrip(&mut tunnel, &[b'y'; 100]);
    let periodic = wait_until(Duration::from_secs(10), "a periodic event", || {
        let lines = lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(" task_event: Periodic,") && l.contains(" c_rd_bytes: 100,"))
            .map(|l| pairs(l.split_once(" INFO ").expect("a stdout line").1, ": "))
            .next()
    });
    assert_eq!(periodic["stage"], "Relaying", "{periodic:?}");
    assert_eq!(periodic["c_wr_bytes"], "100", "{periodic:?}");
    drop(tunnel);

    let created_request = events
        .iter()
        .find(|e| e["task_type"] == "HttpForward" && e.get("task_event").is_some())
        .expect("the request's created event");
    assert_eq!(created_request["method"], "GET", "{created_request:?}");
}

/// A SOCKS5 UDP association logs as g3's `UdpAssociate` task: the control connection's and
/// the datagrams' addresses by their own names, the first target, and bytes and datagrams
/// each way.
#[test]
fn udp_tasks_log_their_datagrams() {
    use g3proxy_tests::socks_udp::{associate, client_socket, exchange};
    let echo = g3proxy_tests::UdpEcho::start();
    let text = config("stdout").replace(
        "server:\n",
        "server:\n  - {name: socks, type: socks_proxy, escaper: direct, use_udp_associate: true, listen: \"127.0.0.1:{{socks_port}}\"}\n",
    );
    let (group, lines) = Group::start_with_stdout(&text);
    let client = client_socket();
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], group.port("socks")));
    let (control, relay) = associate(proxy, &client);
    for payload in [&b"one"[..], b"two"] {
        assert!(exchange(&client, relay, echo.addr, payload).is_some());
    }
    drop(control);
    let events = stdout_events(&lines, "Task", 1);
    let udp = &events[0];
    assert_eq!(udp["task_type"], "UdpAssociate", "{udp:?}");
    assert_eq!(udp["initial_peer"], echo.addr.to_string(), "{udp:?}");
    assert_eq!(
        udp["udp_client_addr"],
        client.local_addr().unwrap().to_string(),
        "{udp:?}"
    );
    assert_eq!(udp["udp_listen_addr"], relay.to_string(), "{udp:?}");
    assert_eq!(udp["tcp_server_addr"], proxy.to_string(), "{udp:?}");
    for key in [
        "c_rd_packets",
        "c_wr_packets",
        "r_rd_packets",
        "r_wr_packets",
    ] {
        assert_eq!(udp[key], "2", "{key}: {udp:?}");
    }
    assert_eq!(udp["c_rd_bytes"], "6", "{udp:?}");
    assert!(!udp.contains_key("server_addr"), "{udp:?}");
}

/// Escape and resolve logs (failures only, as g3 writes them): a connection refused by the
/// target names the escaper, the upstream and the reason; a name the zone does not have names
/// the resolver, the query and the server's answer.
#[test]
fn escape_and_resolve_logs_name_what_failed() {
    let certs_dir = std::env::temp_dir().join(format!("g3proxy-logs-certs-{}", std::process::id()));
    let certs = Certs::make(&certs_dir);
    let unbound = Unbound::start(&certs, &["origin.test. 300 IN A 127.0.0.1"]);
    let origin = Origin::start("127.0.0.1");
    // A stream that speaks TLS to a plain HTTP origin: its handshakes fail.
    let text = format!(
        "log: {{default: discard, escape: stdout, resolve: stdout}}\nresolver:\n  - {{name: zone, type: hickory, server: 127.0.0.1, server_port: {}}}\nescaper:\n  - {{name: direct, type: direct_fixed, resolver: zone, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}\nserver:\n  - {{name: http, type: http_proxy, escaper: direct, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n  - {{name: stream, type: tcp_stream, escaper: direct, listen: \"127.0.0.1:{{{{stream_port}}}}\", upstream: \"127.0.0.1:{}\", tls_client: {{}}, upstream_tls_name: origin.test}}\n",
        unbound.port,
        origin.addr.port()
    );
    let (group, lines) = Group::start_with_stdout(&text);
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let closed = free_port("127.0.0.1");
    let refused = format!("http://127.0.0.1:{closed}/");
    assert_eq!(curl_status(&["-x", &proxy, &refused]), "521");
    assert_ne!(curl_status(&["-x", &proxy, "http://missing.test/"]), "200");
    let by_name = format!("http://origin.test:{}/", origin.addr.port());
    assert_eq!(curl(&["-x", &proxy, &by_name]), "hello");

    let escape = &stdout_events(&lines, "Escape", 1)[0];
    assert_eq!(escape["escape_type"], "TcpConnect", "{escape:?}");
    assert_eq!(escape["escaper_type"], "DirectFixed", "{escape:?}");
    assert_eq!(escape["escaper_name"], "direct", "{escape:?}");
    assert_eq!(
        escape["upstream"],
        format!("127.0.0.1:{closed}"),
        "{escape:?}"
    );
    assert_eq!(escape["reason"], "ConnectFailed", "{escape:?}");
    // g3's message (the error in full) ends the line.
    let escape_line = lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(" log_type: Escape,"))
        .cloned()
        .expect("the escape line");
    assert!(
        escape_line.ends_with("Connection refused (os error 111)"),
        "{escape_line}"
    );
    assert_eq!(escape["task_id"].len(), 32, "{escape:?}");

    let resolve = stdout_events(&lines, "Resolve", 1);
    let missing = resolve
        .iter()
        .find(|e| e["query_type"] == "A")
        .unwrap_or_else(|| panic!("an A lookup failed: {resolve:?}"));
    assert_eq!(missing["resolver_type"], "hickory", "{missing:?}");
    assert_eq!(missing["resolver_name"], "zone", "{missing:?}");
    assert_eq!(missing["domain"], "missing.test", "{missing:?}");
    assert_eq!(missing["error_type"], "ServerError", "{missing:?}");
    assert_eq!(missing["error_subtype"], "NOTFOUND", "{missing:?}");
    assert_eq!(missing["rr_source"], "query", "{missing:?}");
    // The fields of its type: the server it asked.
    assert_eq!(missing["server"], "127.0.0.1", "{missing:?}");
    assert_eq!(
        missing["server_port"],
        unbound.port.to_string(),
        "{missing:?}"
    );
    // A lookup failed: that is the resolve log's, not an escape error.
    let connects = stdout_events(&lines, "Escape", 1)
        .into_iter()
        .filter(|e| e["escape_type"] == "TcpConnect")
        .count();
    assert_eq!(connects, 1);

    // A TLS handshake with the upstream that fails.
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", group.port("stream"))).expect("connect");
    let _ = std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
    let events = stdout_events(&lines, "Escape", 2);
    let tls = events
        .iter()
        .find(|e| e["escape_type"] == "TlsHandshake")
        .unwrap_or_else(|| panic!("a TlsHandshake event: {events:?}"));
    assert_eq!(tls["tls_name"], "origin.test", "{tls:?}");
    assert_eq!(tls["tls_application"], "TcpStream", "{tls:?}");
    assert_eq!(tls["escaper_name"], "direct", "{tls:?}");
    // The name that resolves logs nothing.
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(" log_type: Resolve,") && l.contains("origin.test")),
        "a lookup that worked was logged"
    );
}

/// rsyslog on loopback UDP, writing `program|message` for each datagram.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        assert!(
            Path::new("/usr/sbin/rsyslogd").exists(),
            "rsyslog is not installed (ci/setup.sh installs Debian's rsyslog)"
        );
        let port = free_port("127.0.0.1");
        let dir =
            std::env::temp_dir().join(format!("g3proxy-rsyslog-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("rsyslog dir");
        let conf = format!(
            "global(workDirectory=\"{dir}\")\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\")\ntemplate(name=\"parsed\" type=\"string\" string=\"%programname%|%procid%|%msg%\\n\")\n*.* action(type=\"omfile\" file=\"{dir}/messages\" template=\"parsed\")\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("rsyslog.conf");
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd");
        Rsyslog { child, dir, port }
    }

    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("messages"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn syslog_into_a_real_rsyslog_in_both_framings() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let rsyslog = Rsyslog::start();
    for format in ["", ", format_rfc5424: true"] {
        let log = format!(
            "{{task: {{syslog: {{target_udp: \"127.0.0.1:{}\"{format}}}}}}}",
            rsyslog.port
        );
        let mut group = Group::from_text(&config(&log), &std::env::temp_dir(), &[]);
        group.start();
        // rsyslog reads UDP once it is up: wait for a first event to arrive.
        let daemon = format!("daemon_name=\"{}\"", group.name);
        let events = wait_until(Duration::from_secs(20), "three events in rsyslog", || {
            traffic(&group, &origin, &echo);
            let messages = rsyslog.messages();
            let ours: Vec<BTreeMap<String, String>> = messages
                .iter()
                .filter(|m| m.contains(&daemon))
                .map(|m| {
                    let mut parts = m.splitn(3, '|');
                    let program = parts.next().unwrap_or_default();
                    let pid = parts.next().unwrap_or_default();
                    assert_eq!(program, "g3proxy", "{format}: {m}");
                    assert!(pid.parse::<u32>().is_ok(), "{format}: {m}");
                    pairs(parts.next().unwrap_or_default().trim(), "=")
                })
                .collect();
            (ours.len() >= 3).then_some(ours)
        });
        check_events(&events, &group, &echo);
    }
}

#[test]
fn journald_native_protocol_on_a_test_socket() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let dir = std::env::temp_dir().join(format!("g3proxy-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("journal dir");
    let socket_path = dir.join("socket");
    let socket = UnixDatagram::bind(&socket_path).expect("journal socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let log = format!(
        "{{task: {{journal: {{socket_path: \"{}\"}}}}}}",
        socket_path.display()
    );
    let mut group = Group::from_text(&config(&log), &std::env::temp_dir(), &[]);
    group.start();
    traffic(&group, &origin, &echo);
    let mut events = Vec::new();
    let mut buffer = vec![0u8; 65536];
    wait_until(Duration::from_secs(10), "three journal datagrams", || {
        if let Ok(length) = socket.recv(&mut buffer) {
            events.push(journal_fields(&buffer[..length]));
        }
        (events.len() >= 3).then_some(())
    });
    for event in &events {
        assert_eq!(event["SYSLOG_IDENTIFIER"], "g3proxy");
        assert_eq!(event["PRIORITY"], "6");
    }
    // The journal's keys are upper case; compare with the others' names.
    let lowered: Vec<BTreeMap<String, String>> = events
        .iter()
        .map(|e| {
            e.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .collect();
    check_events(&lowered, &group, &echo);
    let _ = std::fs::remove_dir_all(dir);
}

/// A native-protocol datagram: `KEY=value` lines, or `KEY`, a 64-bit length and the value.
fn journal_fields(datagram: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let line_end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        match line.iter().position(|b| *b == b'=') {
            Some(eq) => {
                fields.insert(
                    String::from_utf8_lossy(&line[..eq]).into_owned(),
                    String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
                );
                rest = &rest[(line_end + 1).min(rest.len())..];
            }
            None => {
                let key = String::from_utf8_lossy(line).into_owned();
                let after = &rest[line_end + 1..];
                let length = u64::from_le_bytes(after[..8].try_into().expect("length")) as usize;
                fields.insert(
                    key,
                    String::from_utf8_lossy(&after[8..8 + length]).into_owned(),
                );
                rest = &after[(8 + length + 1).min(after.len())..];
            }
        }
    }
    fields
}

/// A fluentd forward-protocol receiver: a Python program reading MessagePack messages with
/// PyPI's `msgpack` (not our decoder), printing each as JSON: tag, time, record.
/// A forward-protocol receiver: prints its port, then each message as JSON. Its arguments,
/// all optional: a certificate and key (TLS), a shared key (the HELO / PING / PONG
/// handshake, whose outcome it prints as `{"auth": ...}`), a user name and password.
const FLUENTD: &str = r#"
import hashlib, json, os, socket, ssl, sys, msgpack
args = sys.argv[1:] + [""] * 5
cert, key_file, shared_key, user, password = args[:5]
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(4)
print(server.getsockname()[1], flush=True)
tls = None
if cert:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key_file)
def digest(*parts):
    return hashlib.sha512(b"".join(parts)).hexdigest()
def messages(conn, unpacker):
    while data := conn.recv(65536):
        unpacker.feed(data)
        yield from unpacker
while True:
    conn, _ = server.accept()
    try:
        if tls:
            conn = tls.wrap_socket(conn, server_side=True)
        unpacker = msgpack.Unpacker(raw=False, ext_hook=lambda code, data: [code, data.hex()])
        incoming = messages(conn, unpacker)
        if shared_key:
            nonce, auth = os.urandom(16), (os.urandom(16) if user else b"")
            conn.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth, "keepalive": True}]))
            _, host, salt, key_digest, name, password_digest = next(incoming)
            ok = key_digest == digest(salt.encode(), host.encode(), nonce, shared_key.encode())
            if user:
                ok = ok and name == user and password_digest == digest(auth, user.encode(), password.encode())
            proof = digest(salt.encode(), b"receiver", nonce, shared_key.encode())
            conn.sendall(msgpack.packb(["PONG", ok, "" if ok else "who are you", "receiver", proof]))
            print(json.dumps({"auth": ok, "host": host}), flush=True)
            if not ok:
                conn.close()
                continue
        for tag, time, record in incoming:
            print(json.dumps({"tag": tag, "time": time, "record": record}), flush=True)
    except (OSError, ValueError, StopIteration) as error:
        print(json.dumps({"error": str(error)}), flush=True)
"#;

/// What the receiver printed so far, as JSON.
fn printed(receiver: &PythonPeer) -> Vec<serde_json::Value> {
    let lines = receiver.lines.lock().unwrap();
    lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The task events among what the receiver printed, once there are three, checked as
/// fluentd messages and returned as records.
fn fluentd_events(receiver: &PythonPeer) -> Vec<BTreeMap<String, String>> {
    let messages = wait_until(Duration::from_secs(10), "three fluentd messages", || {
        let received = printed(receiver);
        let tagged: Vec<_> = received
            .iter()
            .filter(|m| m.get("tag").is_some())
            .cloned()
            .collect();
        (tagged.len() >= 3).then_some(tagged)
    });
    let mut events = Vec::new();
    for message in &messages {
        assert_eq!(message["tag"], "g3proxy.Task");
        // EventTime: extension type 0, eight bytes.
        assert_eq!(message["time"][0], 0, "{message}");
        assert_eq!(
            message["time"][1].as_str().map(str::len),
            Some(16),
            "{message}"
        );
        let record: BTreeMap<String, String> = message["record"]
            .as_object()
            .expect("a record map")
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), v)
            })
            .collect();
        events.push(record);
    }
    events
}

#[test]
fn fluentd_forward_protocol_into_a_test_receiver() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let receiver = PythonPeer::start(FLUENTD, &[]);
    let port = receiver.port;
    let log = format!("{{task: {{fluentd: {{address: \"127.0.0.1:{port}\"}}}}}}");
    let mut group = Group::from_text(&config(&log), &std::env::temp_dir(), &[]);
    group.start();
    traffic(&group, &origin, &echo);
    let events = fluentd_events(&receiver);
    drop(receiver);
    check_events(&events, &group, &echo);
}

/// The same over TLS, after the forward protocol's handshake with a shared key and a login
/// (the receiver checks both digests, we check its proof of the key).
#[test]
fn fluentd_over_tls_with_a_shared_key_and_a_login() {
    let (origin, echo) = (Origin::start("127.0.0.1"), Echo::start("127.0.0.1"));
    let dir = std::env::temp_dir().join(format!("g3proxy-fluentd-tls-{}", std::process::id()));
    let certs = Certs::make(&dir);
    let (cert, key) = (certs.path("server.pem"), certs.path("server.key"));
    let receiver = PythonPeer::start(
        FLUENTD,
        &[
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            "fluent-key",
            "logger",
            "log-password",
        ],
    );
    let port = receiver.port;
    let log = format!(
        "{{task: {{fluentd: {{address: \"127.0.0.1:{port}\", tls_client: {{ca_certificate: {ca}}}, tls_name: localhost, shared_key: fluent-key, username: logger, password: log-password, hostname: proxy-1}}}}}}",
        ca = certs.path("ca.pem").display()
    );
    let mut group = Group::from_text(&config(&log), &std::env::temp_dir(), &[]);
    group.start();
    traffic(&group, &origin, &echo);
    let events = fluentd_events(&receiver);
    {
        let received = printed(&receiver);
        let handshakes: Vec<_> = received
            .iter()
            .filter(|m| m.get("auth").is_some())
            .collect();
        assert!(!handshakes.is_empty(), "{received:?}");
        assert!(
            handshakes
                .iter()
                .all(|m| m["auth"] == true && m["host"] == "proxy-1"),
            "{handshakes:?}"
        );
    }
    check_events(&events, &group, &echo);
    let _ = std::fs::remove_dir_all(dir);
}
