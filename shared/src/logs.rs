//! The process log of the supervisor and of every worker, through `tracing`: code logs with
//! `tracing::{warn, info, debug}!` (fields included), and [`init`] installs the one subscriber,
//! which formats a line and hands it to a writer thread without waiting. When the writer falls
//! behind (stderr is a pipe that someone stopped reading, journald is slow), lines are dropped
//! and counted instead of stalling a runtime thread, and the count is written once the writer
//! catches up. Under systemd stderr goes to the journal. Task logs with their own drivers
//! belong to the `log` section and do not pass through here.
//!
//! With `g3proxy -d` there is no stderr to write to: the supervisor, and each worker it
//! starts (told so in its start message), writes its lines to the local syslog (`/dev/log`,
//! facility daemon) instead. With `g3proxy -s` they go to journald in its native protocol
//! (`SYSLOG_IDENTIFIER=g3proxy`, a `PRIORITY` per line, as g3proxy writes them), and to
//! stderr whenever the journal's socket does not take them.
//!
//! Spans are not used: an event carries its context in its fields.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Lines waiting for the writer; past this they are dropped.
const QUEUE: usize = 8192;

static WRITER: OnceLock<SyncSender<Line>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Where the process log goes (`-d`: syslog, `-s`: journald, else stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLogSink {
    #[default]
    Stderr,
    Syslog,
    Journal,
}

/// journald's socket for the native protocol.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where the writer thread puts lines.
enum Sink {
    Stderr,
    /// The local syslog, each line a datagram with its priority.
    Syslog(std::os::unix::net::UnixDatagram),
    /// journald, each line a datagram of fields, at this socket.
    Journal(std::os::unix::net::UnixDatagram, &'static str),
}

/// One field of a journald native-protocol datagram: `KEY=value` and a newline, or, for a
/// value with a newline in it, the binary form (`KEY`, newline, the value's length as 64-bit
/// little endian, the value, newline). Keys are upper-cased, other bytes than letters and
/// digits made `_`, as journald wants them.
pub fn journal_field(out: &mut Vec<u8>, key: &str, value: &str) {
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

/// A process-log line as a journald native-protocol datagram (a message of several lines
/// in the binary form, its own last newline taken off).
fn journal_datagram(text: &str, severity: u8) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(text.len() + 80);
    journal_field(&mut datagram, "MESSAGE", text.trim_end());
    journal_field(&mut datagram, "PRIORITY", &severity.to_string());
    journal_field(&mut datagram, "SYSLOG_IDENTIFIER", "g3proxy");
    journal_field(&mut datagram, "SYSLOG_PID", &std::process::id().to_string());
    datagram
}

enum Line {
    /// A line and its syslog severity (3 error .. 7 debug).
    Text(String, u8),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// Installs the process log. `prefix` starts every line (`g3proxy[PID]`,
/// `g3proxy-worker[gen G #I pid P]`); `base` is the level written without `-v`, and each
/// `-v` (`verbose`) adds one more (info, then debug, then trace). Lines go to `to`.
pub fn init(prefix: String, base: Level, verbose: u8, to: ProcessLogSink) {
    let levels = [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ];
    let base_index = levels.iter().position(|l| *l == base).unwrap_or(1);
    let max = levels[(base_index + verbose as usize).min(levels.len() - 1)];
    let (sender, receiver) = sync_channel(QUEUE);
    let writer_prefix = prefix.clone();
    let socket = std::os::unix::net::UnixDatagram::unbound();
    let sink = match (to, socket) {
        (ProcessLogSink::Syslog, Ok(socket)) => Sink::Syslog(socket),
        (ProcessLogSink::Journal, Ok(socket)) => Sink::Journal(socket, JOURNAL_SOCKET),
        _ => Sink::Stderr,
    };
    let spawned = std::thread::Builder::new()
        .name("process-log".into())
        .spawn(move || write_lines(&writer_prefix, receiver, sink));
    if spawned.is_ok() {
        let _ = WRITER.set(sender);
    }
    let _ = tracing::subscriber::set_global_default(ProcessLog { prefix, max });
}

/// Waits (a second at most) until the lines logged so far are written: before exit.
pub fn flush() {
    let Some(writer) = WRITER.get() else {
        return;
    };
    let (done, wait) = sync_channel(1);
    // Queued behind everything logged so far; sent from a thread of its own, so a writer
    // stuck on a blocked stderr cannot hold the exit past the timeout.
    let writer = writer.clone();
    let _ = std::thread::Builder::new().spawn(move || writer.send(Line::Flush(done)));
    let _ = wait.recv_timeout(Duration::from_secs(1));
}

fn write_lines(prefix: &str, receiver: Receiver<Line>, sink: Sink) {
    let write = |text: &str, severity: u8| match &sink {
        Sink::Stderr => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        Sink::Syslog(socket) => {
            // RFC 3164 without a timestamp (syslog adds its own): facility daemon (3).
            let datagram = format!(
                "<{}>g3proxy[{}]: {}",
                3 * 8 + severity,
                std::process::id(),
                text.trim_end()
            );
            let _ = socket.send_to(datagram.as_bytes(), "/dev/log");
        }
        Sink::Journal(socket, path) => {
            let datagram = journal_datagram(text, severity);
            if socket.send_to(&datagram, path).is_err() {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    };
    for line in receiver {
        // Lines were dropped since the last one written: say so where the gap is.
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text =
                format!("{prefix} warn: {dropped} log lines dropped while the log was blocked\n");
            write(&text, 4);
        }
        match line {
            Line::Text(text, severity) => write(&text, severity),
            Line::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn send(text: String, severity: u8) {
    match WRITER.get() {
        Some(writer) => match writer.try_send(Line::Text(text, severity)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(Line::Text(text, _))) => eprint!("{text}"),
            Err(TrySendError::Disconnected(_)) => {}
        },
        // The writer thread could not start (the process is out of threads): stderr directly,
        // which may block, rather than losing every line.
        None => eprint!("{text}"),
    }
}

struct ProcessLog {
    prefix: String,
    max: Level,
}

impl Subscriber for ProcessLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn event(&self, event: &Event<'_>) {
        let (level, severity) = match *event.metadata().level() {
            Level::ERROR => ("error", 3),
            Level::WARN => ("warn", 4),
            Level::INFO => ("info", 6),
            Level::DEBUG => ("debug", 7),
            Level::TRACE => ("trace", 7),
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = format!("{} {level}: {}", self.prefix, fields.message);
        text.push_str(&fields.rest);
        text.push('\n');
        send(text, severity);
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // A format string's arguments arrive here; their Debug form is the formatted text.
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_their_priority_and_identifier() {
        let dir = std::env::temp_dir().join(format!("g3proxy-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let journal = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
        let (sender, receiver) = sync_channel(4);
        let sink = Sink::Journal(std::os::unix::net::UnixDatagram::unbound().unwrap(), path);
        let writer = std::thread::spawn(move || write_lines("p", receiver, sink));
        sender.send(Line::Text("p warn: a\nb\n".into(), 4)).unwrap();
        drop(sender);
        writer.join().unwrap();
        let mut datagram = [0u8; 512];
        let length = journal.recv(&mut datagram).unwrap();
        // A message of two lines goes in the binary form, its length before it.
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&11u64.to_le_bytes());
        want.extend_from_slice(b"p warn: a\nb\n");
        want.extend_from_slice(
            format!(
                "PRIORITY=4\nSYSLOG_IDENTIFIER=g3proxy\nSYSLOG_PID={}\n",
                std::process::id()
            )
            .as_bytes(),
        );
        assert_eq!(&datagram[..length], want.as_slice());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
