//! Structured logs (the `log` section): events with g3proxy's field names, written by a
//! thread of their own per logger through the driver the config names (one file per
//! driver). A proxy task never waits on a log: an event goes into a bounded queue, and when
//! the queue is full it is dropped and counted (`dropped`), as g3's `ChannelOverflow`.
//!
//! Every event carries g3's shared keys: `daemon_name` (the group), `pid`, `log_type`.

mod fluentd;
mod journal;
mod stdout;
mod syslog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};

use g3proxy_shared::config::log::LogDriver;

/// Events waiting for the writer; beyond this many, new ones are dropped.
const QUEUE: usize = 4096;

/// One field's value: strings are quoted by the text formats, numbers are not.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(u64),
}

/// One log event: its fields in the order they are written (the text drivers that sort do
/// so themselves).
#[derive(Debug, Clone)]
pub struct Event {
    pub fields: Vec<(&'static str, Value)>,
}

impl Event {
    pub fn new() -> Event {
        Event {
            fields: Vec::with_capacity(24),
        }
    }

    pub fn str(&mut self, key: &'static str, value: impl ToString) -> &mut Event {
        self.fields.push((key, Value::Str(value.to_string())));
        self
    }

    pub fn int(&mut self, key: &'static str, value: u64) -> &mut Event {
        self.fields.push((key, Value::Int(value)));
        self
    }

    /// A field present only when there is a value (g3 leaves absent ones out).
    pub fn opt(&mut self, key: &'static str, value: Option<impl ToString>) -> &mut Event {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }
}

/// How a driver writes one event; each runs on its logger's thread.
trait Write: Send {
    fn write(&mut self, event: &Event);
}

/// A logger of one kind (`task`, ...): the queue to its thread.
pub struct Logger {
    sender: Option<SyncSender<Event>>,
    kind: &'static str,
    daemon_name: Arc<str>,
    pub dropped: AtomicU64,
}

impl Logger {
    /// A logger writing `kind` events (g3's `log_type`: `Task`, ...) through `driver`;
    /// `None` for `discard`.
    pub fn start(
        driver: &LogDriver,
        kind: &'static str,
        daemon_name: &str,
    ) -> anyhow::Result<Option<Arc<Logger>>> {
        let ident = "g3proxy";
        let mut writer: Box<dyn Write> = match driver {
            LogDriver::Discard => return Ok(None),
            LogDriver::Stdout => Box::new(stdout::Stdout),
            LogDriver::Journal(config) => Box::new(journal::Journal::new(config, ident)?),
            LogDriver::Syslog(config) => Box::new(syslog::Syslog::new(config, ident)?),
            LogDriver::Fluentd(config) => Box::new(fluentd::Fluentd::new(config, kind)),
        };
        let (sender, receiver) = mpsc::sync_channel::<Event>(QUEUE);
        std::thread::Builder::new()
            .name(format!("log-{}", kind.to_ascii_lowercase()))
            .spawn(move || {
                while let Ok(event) = receiver.recv() {
                    writer.write(&event);
                }
            })?;
        Ok(Some(Arc::new(Logger {
            sender: Some(sender),
            kind,
            daemon_name: daemon_name.into(),
            dropped: AtomicU64::new(0),
        })))
    }

    /// Queues `event` with the shared keys, or drops it when the queue is full.
    pub fn log(&self, mut event: Event) {
        event
            .str("daemon_name", &self.daemon_name)
            .int("pid", u64::from(std::process::id()))
            .str("log_type", self.kind);
        let Some(sender) = &self.sender else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Logger {
    /// Lets the thread write what is queued before the process exits.
    fn drop(&mut self) {
        self.sender.take();
    }
}

/// `k="v"` pairs as g3's text formats write them: strings quoted with `"` and `\` escaped,
/// numbers bare, `, ` between.
pub fn key_values(fields: &[(&'static str, Value)], separator: &str, out: &mut String) {
    use std::fmt::Write as _;
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(key);
        out.push_str(separator);
        match value {
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Str(text) => {
                out.push('"');
                for c in text.chars() {
                    for escaped in c.escape_debug() {
                        out.push(escaped);
                    }
                }
                out.push('"');
            }
        }
    }
}
