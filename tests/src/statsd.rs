//! A StatsD receiver on loopback UDP for metrics tests: it keeps every line it gets (the
//! DogStatsD format: `name:value|kind|#tag:value,…`) for the test to sum and search.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};

pub struct StatsdReceiver {
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl StatsdReceiver {
    pub fn start() -> StatsdReceiver {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("statsd receiver");
        let port = socket.local_addr().expect("receiver address").port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 65536];
            while let Ok(length) = socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                sink.lock()
                    .unwrap()
                    .extend(text.lines().map(str::to_string));
            }
        });
        StatsdReceiver { port, lines }
    }

    /// The values and tag lists of the `kind` (`c`, `g`) lines named `name` that carry all
    /// of `tags` (as `key:value`).
    pub fn matching(&self, name: &str, kind: &str, tags: &[&str]) -> Vec<(u64, String)> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|line| {
                let (metric, rest) = line.split_once(':')?;
                let (value, rest) = rest.split_once('|')?;
                let (line_kind, line_tags) = rest.split_once("|#")?;
                let found: Vec<&str> = line_tags.split(',').collect();
                (metric == name && line_kind == kind && tags.iter().all(|t| found.contains(t)))
                    // (A fractional gauge counts by its whole part.)
                    .then(|| Some((value.parse::<f64>().ok()? as u64, line_tags.to_string())))?
            })
            .collect()
    }

    /// The sum of the counts named `name` with all of `tags`.
    pub fn total(&self, name: &str, tags: &[&str]) -> u64 {
        self.matching(name, "c", tags).iter().map(|(v, _)| v).sum()
    }
}
