//! `syslog`: one datagram per event (sent in batches, see `datagrams.rs`), to a unix socket
//! (`/dev/log` by default) or over UDP, framed as RFC 3164 (the default) or RFC 5424
//! (`format_rfc5424`), facility daemon at severity notice, as g3 sends task logs. The body is g3's text form: `key="value"` pairs,
//! `, ` between. Times are UTC (this build carries no time zone database).

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;

use g3proxy_shared::config::log::{SyslogConfig, SyslogTarget};
use g3proxy_shared::types::{Rfc3339Micros, rfc3164_stamp};

use super::datagrams::Datagrams;
use super::{Rendered, Write, key_values};

/// Facility daemon (3), severity notice (5): g3's priority for its info-level logs.
const PRIORITY: u8 = 3 * 8 + 5;

enum Socket {
    /// Connected to the path when a batch goes; made again after a failure.
    Unix(Option<UnixDatagram>, std::path::PathBuf),
    Udp(UdpSocket),
}

pub struct Syslog {
    socket: Socket,
    config: SyslogConfig,
    ident: &'static str,
    hostname: Option<String>,
    batch: Datagrams,
    /// The line being formatted.
    line: String,
}

impl Syslog {
    pub fn new(config: &SyslogConfig, ident: &'static str) -> anyhow::Result<Syslog> {
        let socket = match &config.target {
            SyslogTarget::Unix(path) => Socket::Unix(None, path.clone()),
            SyslogTarget::Udp(address) => {
                let socket = UdpSocket::bind(crate::escapers::any_address_for(*address))?;
                socket.connect(address)?;
                Socket::Udp(socket)
            }
        };
        let hostname = (config.emit_hostname || config.rfc5424.is_some()).then(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_else(|_| "-".into())
        });
        Ok(Syslog {
            socket,
            config: config.clone(),
            ident,
            hostname,
            batch: Datagrams::default(),
            line: String::new(),
        })
    }

    /// Writes the line for `event` at the end of `line`.
    fn format(&self, event: Rendered<'_>, line: &mut String) {
        let now = std::time::SystemTime::now();
        let pid = super::pid();
        let _ = match &self.config.rfc5424 {
            None => {
                let host = match (&self.hostname, self.config.emit_hostname) {
                    (Some(host), true) => host.as_str(),
                    _ => "",
                };
                let space = if host.is_empty() { "" } else { " " };
                write!(
                    line,
                    "<{PRIORITY}>{}{space}{host} {}[{pid}]: ",
                    rfc3164_stamp(now),
                    self.ident
                )
            }
            Some(ids) => write!(
                line,
                "<{PRIORITY}>1 {} {} {} {pid} {} - ",
                Rfc3339Micros(now),
                self.hostname.as_deref().unwrap_or("-"),
                self.ident,
                ids.message_id.as_deref().unwrap_or("-"),
            ),
        };
        // g3's content: the message, then the fields.
        if !event.message().is_empty() {
            super::escaped(event.message(), line);
            line.push_str(", ");
        }
        key_values(event.fields(), "=", line);
        if self.config.append_report_ts {
            let ts = g3proxy_shared::types::unix_secs(now);
            let _ = write!(line, ", report_ts={ts}");
        }
    }
}

impl Write for Syslog {
    fn write(&mut self, event: Rendered<'_>) -> usize {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        self.format(event, &mut line);
        self.batch.open().extend_from_slice(line.as_bytes());
        self.line = line;
        self.batch.end()
    }

    fn flush(&mut self) -> usize {
        // A syslog that is not there loses the events; the proxy goes on.
        match &mut self.socket {
            Socket::Udp(socket) => self.batch.send(socket.as_fd()),
            Socket::Unix(socket, path) => self.batch.send_to_path(socket, path),
        }
    }
}
