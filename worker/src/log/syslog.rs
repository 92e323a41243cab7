//! `syslog`: one datagram per event, to a unix socket (`/dev/log` by default) or over UDP,
//! framed as RFC 3164 (the default) or RFC 5424 (`format_rfc5424`), facility daemon at
//! severity notice, as g3 sends task logs. The body is g3's text form: `key="value"` pairs,
//! `, ` between. Times are UTC (this build carries no time zone database).

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;

use g3proxy_shared::config::log::{SyslogConfig, SyslogTarget};
use g3proxy_shared::types::{rfc3164_stamp, rfc3339_micros};

use super::{Event, Write, key_values};

/// Facility daemon (3), severity notice (5): g3's priority for its info-level logs.
const PRIORITY: u8 = 3 * 8 + 5;

enum Socket {
    Unix(UnixDatagram, std::path::PathBuf),
    Udp(UdpSocket),
}

pub struct Syslog {
    socket: Socket,
    config: SyslogConfig,
    ident: &'static str,
    hostname: Option<String>,
}

impl Syslog {
    pub fn new(config: &SyslogConfig, ident: &'static str) -> anyhow::Result<Syslog> {
        let socket = match &config.target {
            SyslogTarget::Unix(path) => Socket::Unix(UnixDatagram::unbound()?, path.clone()),
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
        })
    }

    fn format(&self, event: &Event) -> String {
        let now = std::time::SystemTime::now();
        let pid = super::pid();
        let mut line = match &self.config.rfc5424 {
            None => {
                let host = match (&self.hostname, self.config.emit_hostname) {
                    (Some(host), true) => format!(" {host}"),
                    _ => String::new(),
                };
                format!(
                    "<{PRIORITY}>{}{host} {}[{pid}]: ",
                    rfc3164_stamp(now),
                    self.ident
                )
            }
            Some(ids) => format!(
                "<{PRIORITY}>1 {} {} {} {pid} {} - ",
                rfc3339_micros(now),
                self.hostname.as_deref().unwrap_or("-"),
                self.ident,
                ids.message_id.as_deref().unwrap_or("-"),
            ),
        };
        // g3's content: the message, then the fields.
        if !event.message.is_empty() {
            super::escaped(&event.message, &mut line);
            line.push_str(", ");
        }
        key_values(event.fields(), "=", &mut line);
        if self.config.append_report_ts {
            let ts = g3proxy_shared::types::unix_secs(now);
            line.push_str(&format!(", report_ts={ts}"));
        }
        line
    }
}

impl Write for Syslog {
    fn write(&mut self, event: &Event) -> Option<usize> {
        let line = self.format(event);
        // A syslog that is not there loses the event; the proxy goes on.
        match &self.socket {
            Socket::Unix(socket, path) => socket.send_to(line.as_bytes(), path),
            Socket::Udp(socket) => socket.send(line.as_bytes()),
        }
        .ok()
    }
}
