//! `journal`: journald's native protocol, one datagram per event on its socket (sent in
//! batches, see `datagrams.rs`): `KEY=value` lines, a value with a newline in the binary
//! form (`KEY`, newline, its length as 64-bit little endian, the value, newline). Keys as g3 writes them: upper case, `PRIORITY`,
//! `SYSLOG_IDENTIFIER` and `MESSAGE` first.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use g3proxy_shared::config::log::JournalConfig;
use g3proxy_shared::logs::journal_field as field;

use super::datagrams::Datagrams;
use super::{Rendered, Value, Write};

pub struct Journal {
    /// Connected to journald's socket; made again after a failure.
    socket: Option<UnixDatagram>,
    path: PathBuf,
    ident: &'static str,
    batch: Datagrams,
    /// A number field's text.
    number: String,
}

impl Journal {
    pub fn new(config: &JournalConfig, ident: &'static str) -> anyhow::Result<Journal> {
        Ok(Journal {
            socket: None,
            path: config.socket_path.clone(),
            ident,
            batch: Datagrams::default(),
            number: String::new(),
        })
    }
}

impl Write for Journal {
    fn write(&mut self, event: Rendered<'_>) -> usize {
        let datagram = self.batch.open();
        field(datagram, "PRIORITY", "6");
        field(datagram, "SYSLOG_IDENTIFIER", self.ident);
        field(datagram, "MESSAGE", event.message());
        for (key, value) in event.fields() {
            match value {
                Value::Str(text) => field(datagram, key, text),
                Value::Int(n) => {
                    self.number.clear();
                    super::push_decimal(&mut self.number, n);
                    field(datagram, key, &self.number);
                }
            }
        }
        self.batch.end()
    }

    fn flush(&mut self) -> usize {
        // A journal that is not there (or an event too large for one datagram) loses them.
        self.batch.send_to_path(&mut self.socket, &self.path)
    }
}
