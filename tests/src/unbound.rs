//! Unbound (Debian's package) as an authoritative name server on loopback for resolver tests:
//! plain DNS (UDP and TCP), DNS over TLS and DNS over HTTPS on ports of the test's choosing,
//! with the test CA's server certificate, serving the zone `test.` that the test writes. Every
//! question is logged, so a test can count what reached the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Certs, free_port, wait_until};

pub struct Unbound {
    child: Child,
    dir: PathBuf,
    /// Plain DNS, UDP and TCP.
    pub port: u16,
    pub dot_port: u16,
    pub doh_port: u16,
}

impl Unbound {
    /// Serves `records` (zone-file lines such as `"a.test. 300 IN A 127.0.0.2"`) in the
    /// static zone `test.`: other names in it are NXDOMAIN. `certs` has the server
    /// certificate for `localhost`.
    pub fn start(certs: &Certs, records: &[&str]) -> Unbound {
        let unbound = Path::new("/usr/sbin/unbound");
        assert!(
            unbound.exists(),
            "unbound is not installed (ci/setup.sh installs Debian's unbound)"
        );
        let port = free_port("127.0.0.1");
        let (dot_port, doh_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let dir =
            std::env::temp_dir().join(format!("g3proxy-unbound-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("unbound dir");
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  interface: 127.0.0.1@{dot_port}\n  interface: 127.0.0.1@{doh_port}\n  tls-port: {dot_port}\n  https-port: {doh_port}\n  tls-service-key: \"{key}\"\n  tls-service-pem: \"{pem}\"\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"{dir}/queries.log\"\n  log-queries: yes\n  verbosity: 0\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  local-zone: \"test.\" static\n",
            key = certs.path("server.key").display(),
            pem = certs.path("server.pem").display(),
            dir = dir.display(),
        );
        for record in records {
            conf.push_str(&format!("  local-data: \"{record}\"\n"));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        std::fs::write(dir.join("unbound.conf"), conf).expect("unbound.conf");
        let child = Command::new(unbound)
            .arg("-c")
            .arg(dir.join("unbound.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound");
        for listening in [port, dot_port, doh_port] {
            wait_until(Duration::from_secs(20), "unbound to listen", || {
                std::net::TcpStream::connect(("127.0.0.1", listening)).ok()
            });
        }
        Unbound {
            child,
            dir,
            port,
            dot_port,
            doh_port,
        }
    }

    /// Questions the server was asked for `name` (as `a.test.`) and `rr_type` (`A`, `AAAA`).
    pub fn questions(&self, name: &str, rr_type: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("queries.log")).unwrap_or_default();
        let wanted = format!(" {name} {rr_type} IN");
        log.lines().filter(|line| line.contains(&wanted)).count()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// DNS over QUIC (`"doq"`) or over HTTP/3 (`"doh3"`) in front of `unbound`, which serves
/// neither: `quic_dns.py` (on PyPI's aioquic) takes each query off QUIC, with the test CA's
/// server certificate, and asks unbound over TCP. Its port is UDP.
pub fn quic_front(protocol: &str, certs: &Certs, unbound: &Unbound) -> crate::PythonPeer {
    let (pem, key) = (certs.path("server.pem"), certs.path("server.key"));
    crate::PythonPeer::start(
        include_str!("quic_dns.py"),
        &[
            protocol,
            &pem.display().to_string(),
            &key.display().to_string(),
            &unbound.port.to_string(),
        ],
    )
}
