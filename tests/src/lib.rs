//! The end-to-end test harness: runs the real binaries on loopback, on ports the kernel
//! picks, with real clients. What it offers:
//! - [`Group`]: a daemon group in its own temporary directory (config, control sockets), the
//!   supervisors started in it, and cleanup of every process it started;
//! - [`NotifySocket`]: systemd's side of `NOTIFY_SOCKET`, including the fd store; and
//!   [`RealSystemd`]: systemd itself, booted in its own namespaces, for the unit file;
//! - [`Origin`] and [`Echo`]: an HTTP origin and a TCP echo server; [`FakeDns`] and
//!   [`Unbound`] (a real name server, with DoT and DoH) for resolvers;
//! - [`Load`]: bounded clients sending requests continuously, counting every failure;
//! - [`StatsdReceiver`]: a StatsD server that keeps every metric line it gets;
//! - [`socks_udp`]: a SOCKS5 UDP client (associate, datagrams, one exchange);
//! - [`Wrk`]: wrk at a high new-connection rate, for zero-loss checks where a loss would show;
//! - [`wait_until`]: the one way tests wait, naming what they waited for when it fails.

pub mod certs;
pub mod clients;
pub mod dns;
pub mod group;
pub mod netns;
pub mod notify;
pub mod python;
pub mod servers;
pub mod socks_udp;
pub mod statsd;
pub mod systemd;
pub mod unbound;
pub mod wrk;

pub use certs::Certs;
pub use clients::{
    Load, LoadStats, Until, curl, curl_status, http_get, open_connect_tunnel, open_socks5_tunnel,
    roundtrip, s_client, try_curl,
};
pub use dns::FakeDns;
pub use group::Group;
pub use netns::Netns;
pub use notify::NotifySocket;
pub use python::PythonPeer;
pub use servers::{
    Echo, Origin, RecordingOrigin, SourceOrigin, TlsOrigin, UdpEcho, blackhole_v6, http_answer,
    pattern_byte,
};
pub use statsd::StatsdReceiver;
pub use systemd::RealSystemd;
pub use unbound::Unbound;
pub use wrk::{Wrk, WrkResult};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Waits until `check` returns `Some`, or panics after `timeout` saying what it waited for.
pub fn wait_until<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    try_wait_until(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Like [`wait_until`], but answers `None` at the deadline instead of failing.
pub fn try_wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Polling with a growing pause: a condition, not a fixed sleep, ends the wait.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A binary of this workspace, built by `cargo build --workspace --bins` before the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A port the kernel just gave out and took back, for configs that need a fixed number.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A config line for a `direct_fixed` escaper `name` whose connections leave from `ip` (a
/// loopback address), so that an origin reporting the source shows which escaper carried
/// a request: what the route tests list their next escapers with.
pub fn bound_escaper(name: &str, ip: &str) -> String {
    format!(
        "  - {{name: {name}, type: direct_fixed, resolver: none, bind_ip: {ip}, egress_network_filter: {{default: forbid, permit: 127.0.0.0/8}}}}\n"
    )
}
