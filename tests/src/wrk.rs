//! wrk (Debian's package) as a high-rate client: a new connection per request
//! (`Connection: close`) through the HTTP proxy, for zero-loss claims that must hold where a
//! loss would show. Bounded by its duration; the result counts every error wrk saw.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Wrk {
    child: Child,
    script: std::path::PathBuf,
}

#[derive(Debug)]
pub struct WrkResult {
    pub requests: u64,
    pub per_second: f64,
    pub socket_errors: u64,
    pub bad_status: u64,
    pub output: String,
}

impl Wrk {
    /// Starts `connections` clients for `duration`, each request a new connection through
    /// `proxy` to `origin`.
    pub fn start(
        proxy: SocketAddr,
        origin: SocketAddr,
        connections: usize,
        duration: Duration,
        scratch: &std::path::Path,
    ) -> Wrk {
        let script = scratch.join("forward.lua");
        let lua = format!(
            "wrk.method = \"GET\"\nwrk.path = \"http://{origin}/\"\nwrk.headers[\"Connection\"] = \"close\"\n"
        );
        std::fs::write(&script, lua).expect("write wrk script");
        let child = Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{connections}"),
                &format!("-d{}s", duration.as_secs().max(1)),
                "--timeout",
                "10s",
                "-s",
            ])
            .arg(&script)
            .arg(format!("http://{proxy}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrk is installed (ci/setup.sh installs it)");
        Wrk { child, script }
    }

    pub fn finish(self) -> WrkResult {
        let output = self.child.wait_with_output().expect("wrk output");
        let _ = std::fs::remove_file(&self.script);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let number_after = |label: &str| -> Option<f64> {
            let rest = &text[text.find(label)? + label.len()..];
            rest.trim_start()
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()?
                .parse()
                .ok()
        };
        let requests = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(" requests in ")
                    .and_then(|(n, _)| n.parse().ok())
            })
            .unwrap_or(0);
        let socket_errors = ["connect ", "read ", "write ", "timeout "]
            .iter()
            .filter_map(|label| {
                text.lines()
                    .find(|l| l.contains("Socket errors"))
                    .and_then(|l| {
                        let at = l.find(label)? + label.len();
                        l[at..]
                            .split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
            })
            .sum();
        WrkResult {
            requests,
            per_second: number_after("Requests/sec:").unwrap_or(0.0),
            socket_errors,
            bad_status: number_after("Non-2xx or 3xx responses:").map_or(0, |n| n as u64),
            output: text,
        }
    }
}
