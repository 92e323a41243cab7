//! `journal`: journald's native protocol, one datagram per event on its socket: `KEY=value`
//! lines, a value with a newline in the binary form (`KEY`, newline, its length as 64-bit
//! little endian, the value, newline). Keys as g3 writes them: upper case, `PRIORITY`,
//! `SYSLOG_IDENTIFIER` and `MESSAGE` first.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use g3proxy_shared::config::log::JournalConfig;

use super::{Event, Value, Write};

pub struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
    ident: &'static str,
}

impl Journal {
    pub fn new(config: &JournalConfig, ident: &'static str) -> anyhow::Result<Journal> {
        Ok(Journal {
            socket: UnixDatagram::unbound()?,
            path: config.socket_path.clone(),
            ident,
        })
    }
}

fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend(key.bytes().map(|b| match b {
        b'a'..=b'z' => b.to_ascii_uppercase(),
        b'A'..=b'Z' | b'0'..=b'9' => b,
        _ => b'_',
    }));
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

impl Write for Journal {
    fn write(&mut self, event: &Event) -> Option<usize> {
        let mut datagram = Vec::with_capacity(512);
        field(&mut datagram, "PRIORITY", "6");
        field(&mut datagram, "SYSLOG_IDENTIFIER", self.ident);
        field(&mut datagram, "MESSAGE", &event.message);
        for (key, value) in event.fields() {
            match value {
                Value::Str(text) => field(&mut datagram, key, text),
                Value::Int(n) => field(&mut datagram, key, &n.to_string()),
            }
        }
        // A journal that is not there (or an event too large for one datagram) loses it.
        self.socket.send_to(&datagram, &self.path).ok()
    }
}
