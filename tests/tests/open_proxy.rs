//! Scenario: is it an open proxy? `nmap --script http-open-proxy,socks-open-proxy` runs from a
//! test host in a network namespace of its own (a veth pair, 10.253.0.2 → 10.253.0.1), as a
//! stranger on the network would, with an origin at 10.253.0.1 as the page to fetch, and so
//! does curl through the SOCKS port (nmap's SOCKS check resolves the page's host through DNS,
//! which the test host has none of, so curl is the SOCKS control). The shipped default config
//! (loopback only) and a config listening on the veth address with an ingress filter must not
//! be open; the same config without the filter must be (the control that shows the scan
//! would see an open proxy).
//!
//! Needs root (network namespaces, veth) and nmap; elsewhere the test says so and passes.

use std::path::Path;
use std::process::{Command, Output};

use g3proxy_tests::{Group, Netns, Origin};

const HOST_SIDE: &str = "10.253.0.1";
const SCANNER_SIDE: &str = "10.253.0.2";

/// A network namespace with a veth link to ours: the scanner's host.
struct ScanHost {
    netns: Netns,
    link: String,
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl ScanHost {
    fn create() -> Option<ScanHost> {
        if unsafe { libc::geteuid() } != 0 || Command::new("nmap").arg("-V").output().is_err() {
            return None;
        }
        let netns = Netns::new();
        let pid = netns.pid();
        let link = format!("g3scan{}", std::process::id() % 100_000);
        let peer = format!("{link}p");
        run(Command::new("ip").args([
            "link", "add", &link, "type", "veth", "peer", "name", &peer, "netns", &pid,
        ]));
        run(Command::new("ip").args(["addr", "add", &format!("{HOST_SIDE}/30"), "dev", &link]));
        run(Command::new("ip").args(["link", "set", &link, "up"]));
        netns.run(
            "ip",
            &["addr", "add", &format!("{SCANNER_SIDE}/30"), "dev", &peer],
        );
        netns.run("ip", &["link", "set", &peer, "up"]);
        netns.run("ip", &["link", "set", "lo", "up"]);
        Some(ScanHost { netns, link })
    }

    /// nmap's open-proxy scripts against the proxy host, fetching `page` (expecting `hello`).
    fn scan(&self, ports: &str, page: &str) -> String {
        let output = run(self.netns.command("nmap").args([
            "-Pn",
            "-n",
            "-p",
            ports,
            "--script",
            "http-open-proxy,socks-open-proxy",
            "--script-args",
            &format!("proxy.url={page},proxy.pattern=hello"),
            HOST_SIDE,
        ]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl ScanHost {
    /// Whether `page` can be fetched through the SOCKS5 port from the scanner's host.
    fn socks_fetch(&self, port: u16, page: &str) -> bool {
        let output = self
            .netns
            .command("curl")
            .args(["-s", "--max-time", "5", "--socks5"])
            .arg(format!("{HOST_SIDE}:{port}"))
            .arg(page)
            .output()
            .expect("curl in the scanner's namespace");
        output.status.success() && output.stdout.starts_with(b"hello")
    }
}

impl Drop for ScanHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
    }
}

const EXPOSED: &str = "\
resolver:
  - {name: default, type: c-ares}
escaper:
  - {name: default, type: direct_fixed, resolver: default}
server:
  - name: http
    type: http_proxy
    escaper: default
    listen: \"10.253.0.1:3128\"
FILTER
  - name: socks
    type: socks_proxy
    escaper: default
    listen: \"10.253.0.1:1080\"
FILTER
";

const LOOPBACK_ONLY: &str =
    "    ingress_network_filter: {default: forbid, permit: [127.0.0.0/8, \"::1\"]}";

#[test]
fn nmap_from_another_host_finds_no_open_proxy() {
    let Some(scanner) = ScanHost::create() else {
        eprintln!("skipped: needs root and nmap (ci/setup.sh installs nmap)");
        return;
    };
    // Port 80: nmap's SOCKS check takes the host from the page's URL and not its port.
    let _origin = Origin::start_at(&format!("{HOST_SIDE}:80"));
    let page = format!("http://{HOST_SIDE}/");
    let base = std::env::temp_dir();

    // The shipped default config: its ports are not even reachable from another host.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/main.yml"))
            .expect("etc/main.yml");
    let mut group = Group::from_text(&shipped, &base, &[]);
    group.start();
    let report = scanner.scan("13128,11080", &page);
    assert!(!report.contains("OPEN proxy"), "{report}");
    assert!(
        !report.contains("open "),
        "a default port is reachable:\n{report}"
    );
    assert!(!scanner.socks_fetch(11080, &page));
    drop(group);

    // Listening where others can connect, with an ingress filter: reachable, not open.
    let guarded = EXPOSED.replace("FILTER", LOOPBACK_ONLY);
    let mut group = Group::from_text(&guarded, &base, &[]);
    group.start();
    let report = scanner.scan("3128,1080", &page);
    assert!(report.contains("3128/tcp open"), "{report}");
    assert!(!report.contains("OPEN proxy"), "{report}");
    assert!(!scanner.socks_fetch(1080, &page));
    drop(group);

    // The control: the same without the filter is an open proxy, and the scan says so.
    let open = EXPOSED.replace("FILTER\n", "");
    let mut group = Group::from_text(&open, &base, &[]);
    group.start();
    let report = scanner.scan("3128,1080", &page);
    assert!(
        report.contains("http-open-proxy: Potentially OPEN proxy"),
        "{report}"
    );
    assert!(scanner.socks_fetch(1080, &page));
}
