//! StatsD lines in g3proxy's form (`<prefix>.<name>:<value>|c|#tag:value,…` for a count,
//! the change since the last emit; `|g` for a gauge), batched into datagrams of at most
//! `max_segment_size` bytes, sent without blocking: a full socket buffer drops the batch and
//! counts it, never stalls whoever emits. Every line carries `daemon_group` and `stat_id`.

use std::fmt::Write as _;
use std::io;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;

use crate::config::stat::{StatConfig, StatTarget};

enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram, std::path::PathBuf),
}

pub struct StatsdSink {
    socket: Socket,
    prefix: String,
    max_segment_size: usize,
    common_tags: String,
    batch: String,
    /// Datagrams the socket did not take.
    pub dropped: u64,
}

/// A tag value as StatsD backends take it: letters, digits and `-_./`, anything else as `_`.
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if tag_char(c) { c } else { '_' })
        .collect()
}

/// A character a tag keeps as it is (g3's OpenTSDB set): letters and digits of any script,
/// `-_./`.
pub fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

impl StatsdSink {
    pub fn new(config: &StatConfig, daemon_group: &str, stat_id: u64) -> io::Result<StatsdSink> {
        let socket = match &config.target {
            StatTarget::Udp(target) => {
                let bind = match target {
                    std::net::SocketAddr::V4(_) => "0.0.0.0:0",
                    std::net::SocketAddr::V6(_) => "[::]:0",
                };
                let socket = UdpSocket::bind(bind)?;
                socket.connect(target)?;
                socket.set_nonblocking(true)?;
                Socket::Udp(socket)
            }
            StatTarget::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                Socket::Unix(socket, path.clone())
            }
        };
        Ok(StatsdSink {
            socket,
            prefix: config.prefix.clone(),
            max_segment_size: config.max_segment_size,
            common_tags: format!("daemon_group:{},stat_id:{stat_id}", tag_value(daemon_group)),
            batch: String::with_capacity(config.max_segment_size),
            dropped: 0,
        })
    }

    fn line(&mut self, name: &str, value: &str, kind: &str, tags: &[(&str, &str)]) {
        let mut line = String::with_capacity(128);
        let _ = write!(
            line,
            "{}.{name}:{value}|{kind}|#{}",
            self.prefix, self.common_tags
        );
        for (key, value) in tags {
            let _ = write!(line, ",{key}:{}", tag_value(value));
        }
        line.push('\n');
        if !self.batch.is_empty() && self.batch.len() + line.len() > self.max_segment_size {
            self.flush();
        }
        self.batch.push_str(&line);
    }

    /// A count: how much happened since the last emit.
    pub fn count(&mut self, name: &str, delta: u64, tags: &[(&str, &str)]) {
        self.line(name, &delta.to_string(), "c", tags);
    }

    pub fn gauge(&mut self, name: &str, value: u64, tags: &[(&str, &str)]) {
        self.line(name, &value.to_string(), "g", tags);
    }

    pub fn gauge_float(&mut self, name: &str, value: f64, tags: &[(&str, &str)]) {
        self.line(name, &value.to_string(), "g", tags);
    }

    /// Sends what is batched.
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let bytes = self.batch.as_bytes();
        let sent = match &self.socket {
            Socket::Udp(socket) => socket.send(bytes),
            Socket::Unix(socket, path) => socket.send_to(bytes, path),
        };
        if sent.is_err() {
            self.dropped += 1;
        }
        self.batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_batches() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = StatConfig {
            target: StatTarget::Udp(receiver.local_addr().unwrap()),
            prefix: "g3proxy".into(),
            emit_interval: crate::types::HumanDuration::millis(200),
            max_segment_size: 100,
        };
        let mut sink = StatsdSink::new(&config, "my group", 7).unwrap();
        sink.count("server.task.total", 3, &[("server", "http")]);
        sink.gauge(
            "server.task.alive",
            1,
            &[("server", "http"), ("online", "y")],
        );
        sink.flush();
        let mut buffer = [0u8; 512];
        let first = receiver.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..first]).unwrap(),
            "g3proxy.server.task.total:3|c|#daemon_group:my_group,stat_id:7,server:http\n"
        );
        let second = receiver.recv(&mut buffer).unwrap();
        assert!(
            std::str::from_utf8(&buffer[..second])
                .unwrap()
                .starts_with("g3proxy.server.task.alive:1|g|#")
        );
    }
}
