//! `journal`: journald's native protocol, one datagram per event on its socket (sent in
//! batches, see `datagrams.rs`): `KEY=value` lines, a value with a newline in the binary
//! form (`KEY`, newline, its length as 64-bit little endian, the value, newline). Keys as g3 writes them: upper case, `PRIORITY`,
//! `SYSLOG_IDENTIFIER` and `MESSAGE` first.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use g3proxy_shared::config::log::JournalConfig;
use g3proxy_shared::logs::journal_field as field;

use super::datagrams::Datagrams;
use super::{Event, Value, Write};

pub struct Journal {
    /// Connected to journald's socket; made again after a failure.
    socket: Option<UnixDatagram>,
    path: PathBuf,
    ident: &'static str,
    batch: Datagrams,
}

impl Journal {
    pub fn new(config: &JournalConfig, ident: &'static str) -> anyhow::Result<Journal> {
        Ok(Journal {
            socket: None,
            path: config.socket_path.clone(),
            ident,
            batch: Datagrams::default(),
        })
    }
}

impl Write for Journal {
    fn write(&mut self, event: &Event) -> usize {
        let datagram = self.batch.open();
        field(datagram, "PRIORITY", "6");
        field(datagram, "SYSLOG_IDENTIFIER", self.ident);
        field(datagram, "MESSAGE", &event.message);
        let mut number = String::new();
        for (key, value) in event.fields() {
            match value {
                Value::Str(text) => field(datagram, key, text),
                Value::Int(n) => {
                    number.clear();
                    let _ = write!(number, "{n}");
                    field(datagram, key, &number);
                }
            }
        }
        self.batch.end()
    }

    fn flush(&mut self) -> usize {
        // A journal that is not there (or an event too large for one datagram) loses them.
        if self.socket.is_none() {
            self.socket = UnixDatagram::unbound()
                .and_then(|socket| socket.connect(&self.path).map(|()| socket))
                .ok();
        }
        let Some(socket) = &self.socket else {
            self.batch.clear();
            return 0;
        };
        let sent = self.batch.send(socket.as_fd());
        if sent == 0 {
            self.socket = None;
        }
        sent
    }
}
