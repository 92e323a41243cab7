//! Scenario: tcp_tproxy for real, in network namespaces the test creates: a client host, a
//! gateway that routes between it and an origin host and runs the proxy, with nftables TPROXY
//! rules and a policy route sending the client's connections to port 80 into the proxy's
//! IP_TRANSPARENT listener. curl on the client host reaches the origin through the proxy,
//! across a reload; a connection made to the listener itself is closed.
//!
//! Needs root, nft, and a kernel that takes TPROXY rules; elsewhere the test says why and
//! passes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use g3proxy_tests::{Group, Netns, wait_until};

/// A veth pair between two namespaces, each end addressed and up.
fn link(a: &Netns, a_name: &str, a_addr: &str, b: &Netns, b_name: &str, b_addr: &str) {
    a.run(
        "ip",
        &[
            "link",
            "add",
            a_name,
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            &b.pid(),
        ],
    );
    a.run("ip", &["addr", "add", a_addr, "dev", a_name]);
    a.run("ip", &["link", "set", a_name, "up"]);
    b.run("ip", &["addr", "add", b_addr, "dev", b_name]);
    b.run("ip", &["link", "set", b_name, "up"]);
}

const TPROXY_RULES: &str = "table ip g3proxy_test {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname \"gw-c\" tcp dport 80 tproxy to :PORT meta mark set 1 accept
  }
}
";

#[test]
fn tproxy_takes_connections_to_where_they_were_going() {
    let tools = ["nft", "unshare", "ip", "curl", "python3"];
    let usable = unsafe { libc::geteuid() } == 0
        && tools
            .iter()
            .all(|tool| Command::new(tool).arg("--version").output().is_ok());
    if !usable {
        eprintln!("skipped: needs root and {tools:?} (ci/setup.sh installs them)");
        return;
    }
    let (client, gateway, origin_host) = (Netns::new(), Netns::new(), Netns::new());
    for ns in [&client, &gateway, &origin_host] {
        ns.run("ip", &["link", "set", "lo", "up"]);
    }
    link(
        &client,
        "c-gw",
        "10.254.1.2/24",
        &gateway,
        "gw-c",
        "10.254.1.1/24",
    );
    link(
        &gateway,
        "gw-o",
        "10.254.2.1/24",
        &origin_host,
        "o-gw",
        "10.254.2.2/24",
    );
    client.run("ip", &["route", "add", "default", "via", "10.254.1.1"]);
    origin_host.run("ip", &["route", "add", "default", "via", "10.254.2.1"]);
    // /proc/sys/net shows the namespace of the process that opens it.
    gateway.run("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);

    let mut group = Group::new("tproxy");
    let port = group.port("tproxy").to_string();
    let rules = gateway
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut nft| {
            use std::io::Write;
            nft.stdin
                .take()
                .expect("nft stdin")
                .write_all(TPROXY_RULES.replace("PORT", &port).as_bytes())?;
            nft.wait_with_output()
        })
        .expect("nft");
    if !rules.status.success() {
        eprintln!(
            "skipped: the kernel refuses TPROXY rules here: {}",
            String::from_utf8_lossy(&rules.stderr)
        );
        return;
    }
    gateway.run("ip", &["rule", "add", "fwmark", "1", "lookup", "100"]);
    gateway.run(
        "ip",
        &[
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ],
    );

    // The origin: a one-line HTTP server on the origin host.
    let _origin = KillOnDrop(origin_host
        .command("python3")
        .args([
            "-c",
            "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  s.send_response(200); s.send_header('Content-Length','5'); s.end_headers(); s.wfile.write(b'hello')\n def log_message(s,*a): pass\nh.HTTPServer(('10.254.2.2',80),H).serve_forever()",
        ])
        .spawn()
        .expect("origin"));
    wait_until(Duration::from_secs(10), "the origin to answer", || {
        let probe = gateway
            .command("curl")
            .args(["-s", "--max-time", "2", "http://10.254.2.2/"])
            .output()
            .ok()?;
        (probe.stdout == b"hello").then_some(())
    });

    // The proxy, in the gateway's namespace; its control sockets are files, reachable here.
    let mut command = gateway.command(&g3proxy_tests::bin("g3proxy").display().to_string());
    command.args(group.supervisor_args());
    group.mark(&mut command);
    let supervisor = command.spawn().expect("g3proxy in the gateway");
    let pid = supervisor.id();
    group.adopt_child(supervisor);
    group.wait_serving(pid);

    let fetch = || {
        client
            .command("curl")
            .args(["-sS", "--max-time", "10", "http://10.254.2.2/"])
            .output()
            .expect("curl")
    };
    let through = fetch();
    assert_eq!(
        String::from_utf8_lossy(&through.stdout),
        "hello",
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    let status =
        String::from_utf8_lossy(&group.ctl(&["server", "tproxy", "status"]).stdout).into_owned();
    assert!(status.contains("total task: 1"), "{status}");
    // The transparent listener survives a reload.
    let output = group.ctl(&["reload"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&fetch().stdout), "hello");
    // Straight to the listener: no other destination, closed.
    let direct = client
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://10.254.1.1:{port}/"),
        ])
        .output()
        .expect("curl");
    // Accepted, then closed without a byte: curl's "empty reply", or a reset since its request
    // was never read (not "refused", 7, nor a timeout, 28).
    assert!(matches!(direct.status.code(), Some(52 | 56)), "{direct:?}");
}

/// A helper process that must not outlive the test, even when it fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
