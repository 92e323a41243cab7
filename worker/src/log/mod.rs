//! Structured logs (the `log` section): events with g3proxy's field names, written by a
//! thread of their own per logger through the driver the config names (one file per
//! driver). A proxy task never waits on a log: an event goes into a bounded queue, and when
//! the queue is full it is dropped and counted (`dropped`), as g3's `ChannelOverflow`.
//!
//! Every event carries g3's shared keys: `daemon_name` (the group), `pid`, `log_type`.

mod datagrams;
mod fluentd;
mod journal;
mod stdout;
mod syslog;

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use g3proxy_shared::config::log::LogDriver;

/// Events waiting for the writer; beyond this many, new ones are dropped.
const QUEUE: usize = 4096;

/// How long a busy writer sleeps between batches. While it sleeps a task queues an event
/// without waking it (a wake-up per event cost a busy proxy a third of its requests).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// Every logger's queue, for [`flush_all`] as the worker exits.
static QUEUES: Mutex<Vec<SyncSender<Message>>> = Mutex::new(Vec::new());

enum Message {
    /// An event, and the counts of the module's logger it came through.
    Event(Event, Arc<LoggerStats>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// `getpid` is a system call each time, and every event names the process.
static PID: LazyLock<u64> = LazyLock::new(|| u64::from(std::process::id()));

/// This process's id, read once (`getpid` is a system call, and every event and task id
/// carries it).
pub fn pid() -> u32 {
    *PID as u32
}

/// One field's value, borrowed from its event: strings are quoted by the text formats,
/// numbers are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(u64),
}

/// Where a field's value is kept: string values share one buffer, so an event is two
/// allocations however many fields it has.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Str(usize, usize),
    Int(u64),
}

/// One log event: its fields in the order they are written (the text drivers that sort do
/// so themselves).
#[derive(Debug, Clone)]
pub struct Event {
    /// g3's message: empty for task logs, the error in full for escape logs.
    pub message: String,
    text: String,
    slots: Vec<(&'static str, Slot)>,
}

/// Events the logger threads have written, cleared for reuse: a task takes one rather than
/// allocate, and a logger thread does not free what a task's thread allocated (glibc's
/// arenas make that a locked, slow path: it cost a busy proxy more than the formatting).
static SPARE: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// Spare events kept at most (about a queue's worth).
const SPARE_MAX: usize = QUEUE;

/// Gives written events back to [`SPARE`], cleared; beyond what is kept, and any grown
/// unusually large, they are freed here.
fn recycle(events: &mut Vec<Event>) {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    for mut event in events.drain(..) {
        if spare.len() >= SPARE_MAX || event.text.capacity() > 8192 {
            continue;
        }
        event.message.clear();
        event.text.clear();
        event.slots.clear();
        spare.push(event);
    }
}

impl Event {
    pub fn new() -> Event {
        let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        spare.unwrap_or_else(|| Event {
            message: String::new(),
            text: String::with_capacity(512),
            slots: Vec::with_capacity(24),
        })
    }

    pub fn str(&mut self, key: &'static str, value: impl Display) -> &mut Event {
        let start = self.text.len();
        let _ = write!(self.text, "{value}");
        self.slots.push((key, Slot::Str(start, self.text.len())));
        self
    }

    /// Replaces the value of `key` (added if missing).
    pub fn set_str(&mut self, key: &'static str, value: impl Display) -> &mut Event {
        let start = self.text.len();
        let _ = write!(self.text, "{value}");
        let slot = Slot::Str(start, self.text.len());
        match self.slots.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = slot,
            None => self.slots.push((key, slot)),
        }
        self
    }

    /// A socket address, an IPv4 one written digit by digit (an event has several, and
    /// the formatting machinery costs more than the rest of the event).
    pub fn addr(&mut self, key: &'static str, addr: SocketAddr) -> &mut Event {
        let SocketAddr::V4(v4) = addr else {
            return self.str(key, addr);
        };
        let start = self.text.len();
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                self.text.push('.');
            }
            push_decimal(&mut self.text, u64::from(octet));
        }
        self.text.push(':');
        push_decimal(&mut self.text, u64::from(v4.port()));
        self.slots.push((key, Slot::Str(start, self.text.len())));
        self
    }

    /// [`Event::addr`] when there is one.
    pub fn opt_addr(&mut self, key: &'static str, addr: Option<SocketAddr>) -> &mut Event {
        if let Some(addr) = addr {
            self.addr(key, addr);
        }
        self
    }

    pub fn int(&mut self, key: &'static str, value: u64) -> &mut Event {
        self.slots.push((key, Slot::Int(value)));
        self
    }

    /// A field present only when there is a value (g3 leaves absent ones out).
    pub fn opt(&mut self, key: &'static str, value: Option<impl Display>) -> &mut Event {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    /// The fields in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, Value<'_>)> {
        self.slots.iter().map(|(key, slot)| {
            let value = match *slot {
                Slot::Str(start, end) => Value::Str(&self.text[start..end]),
                Slot::Int(n) => Value::Int(n),
            };
            (*key, value)
        })
    }
}

/// `n` in decimal at the end of `out`.
pub(super) fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// A config type as g3 names it in logs: `direct_fixed` is DirectFixed, and g3's own
/// spellings `http_rproxy` HttpRProxy, `tcp_tproxy` TcpTProxy.
pub fn g3_type_name(type_name: &str) -> String {
    type_name
        .split('_')
        .map(|word| match word {
            "rproxy" => "RProxy".to_string(),
            "tproxy" => "TProxy".to_string(),
            word => {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// A duration as g3's logs give times (`{:.3?}`: `1.234ms`), written without a string of
/// its own.
pub struct Elapsed(pub Duration);

impl Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3?}", self.0)
    }
}

/// Bytes as lowercase hex digits (task ids), written without a string of their own.
pub struct Hex<'a>(pub &'a [u8]);

impl Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // A task id's 16 bytes in one write, not a formatted write per byte.
        let mut text = [0u8; 64];
        for chunk in self.0.chunks(text.len() / 2) {
            for (i, b) in chunk.iter().enumerate() {
                text[2 * i] = DIGITS[usize::from(b >> 4)];
                text[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
            }
            let hex = std::str::from_utf8(&text[..2 * chunk.len()]).map_err(|_| std::fmt::Error)?;
            f.write_str(hex)?;
        }
        Ok(())
    }
}

/// How a driver writes events; each runs on its logger's thread. Events are encoded into a
/// batch as they come and sent together, a system call per batch rather than per event.
trait Write: Send {
    /// Adds `event` to the batch; answers its size in bytes.
    fn write(&mut self, event: &Event) -> usize;

    /// Sends the batch; answers how many of its events, in order, the peer took (the rest
    /// are lost).
    fn flush(&mut self) -> usize;
}

/// A logger's counts, for g3's `logger.*` metrics.
#[derive(Default)]
pub struct LoggerStats {
    /// Events logged (`logger.message.total`).
    pub total: AtomicU64,
    /// Events written, and their bytes (`logger.message.pass`, `logger.traffic.pass`).
    pub passed: AtomicU64,
    pub bytes: AtomicU64,
    /// Events dropped because the queue was full (`drop_type: ChannelOverflow`), its
    /// thread was gone (`ChannelClosed`), or the peer did not take them (`PeerUnreachable`).
    pub overflow: AtomicU64,
    pub closed: AtomicU64,
    pub unreachable: AtomicU64,
}

/// A logger of one kind (`task`, ...): the queue to its thread. Each module logs through a
/// handle of its own ([`Logger::named`]: `lt-<server>`, `le-<escaper>`, `lr-<resolver>`, as
/// g3 names its loggers), which shares the queue and thread and keeps its own counts for
/// the `logger.*` metrics.
pub struct Logger {
    sender: SyncSender<Message>,
    /// g3's `log_type` (`Task`, `Escape`, `Resolve`).
    pub kind: &'static str,
    /// g3's logger name, the `logger` tag of its metrics.
    pub name: Arc<str>,
    daemon_name: Arc<str>,
    pub stats: Arc<LoggerStats>,
    /// The handles made from this logger, for the metrics.
    handles: std::sync::Mutex<Vec<Arc<Logger>>>,
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
            LogDriver::Stdout => Box::new(stdout::Stdout::default()),
            LogDriver::Journal(config) => Box::new(journal::Journal::new(config, ident)?),
            LogDriver::Syslog(config) => Box::new(syslog::Syslog::new(config, ident)?),
            LogDriver::Fluentd(config) => Box::new(fluentd::Fluentd::new(config, kind)),
        };
        let (sender, receiver) = mpsc::sync_channel::<Message>(QUEUE);
        let stats = Arc::new(LoggerStats::default());
        std::thread::Builder::new()
            .name(format!("log-{}", kind.to_ascii_lowercase()))
            .spawn(move || write_batches(&receiver, writer.as_mut()))?;
        QUEUES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sender.clone());
        Ok(Some(Arc::new(Logger {
            sender,
            kind,
            name: kind.to_ascii_lowercase().into(),
            daemon_name: daemon_name.into(),
            stats,
            handles: std::sync::Mutex::new(Vec::new()),
        })))
    }

    /// A handle for one module, named `name` in the metrics.
    pub fn named(&self, name: String) -> Arc<Logger> {
        let handle = Arc::new(Logger {
            sender: self.sender.clone(),
            kind: self.kind,
            name: name.into(),
            daemon_name: self.daemon_name.clone(),
            stats: Arc::new(LoggerStats::default()),
            handles: std::sync::Mutex::new(Vec::new()),
        });
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle.clone());
        handle
    }

    /// The module handles made from this logger.
    pub fn handles(&self) -> Vec<Arc<Logger>> {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues `event` with the shared keys, or drops it when the queue is full.
    pub fn log(&self, mut event: Event) {
        event
            .str("daemon_name", &self.daemon_name)
            .int("pid", *PID)
            .str("log_type", self.kind);
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        match self
            .sender
            .try_send(Message::Event(event, self.stats.clone()))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.overflow.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Waits (up to `timeout` in all) until every logger has written what was queued: as the
/// worker exits, so that the last tasks' events are not lost with the process.
pub fn flush_all(timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for queue in queues {
        let (done, wait) = mpsc::sync_channel(1);
        // A full queue is a stuck writer: its events are lost either way.
        if queue.try_send(Message::Flush(done)).is_ok() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = wait.recv_timeout(left);
        }
    }
}

/// Events in one batch at most: a batch is sent once this many are in, or once the queue
/// is empty.
const BATCH: usize = 256;

/// The logger thread's batch: the events encoded and not sent yet, by the counts of the
/// handle each came through and its size.
struct Batcher<'w> {
    writer: &'w mut dyn Write,
    pending: Vec<(Arc<LoggerStats>, usize)>,
    /// The events written, for [`recycle`].
    written: Vec<Event>,
}

impl Batcher<'_> {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Event(event, stats) => {
                let bytes = self.writer.write(&event);
                self.pending.push((stats, bytes));
                self.written.push(event);
                if self.pending.len() >= BATCH {
                    self.flush();
                }
            }
            Message::Flush(done) => {
                self.flush();
                let _ = done.send(());
            }
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        recycle(&mut self.written);
        let taken = self.writer.flush();
        for (index, (stats, bytes)) in self.pending.drain(..).enumerate() {
            if index < taken {
                stats.passed.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            } else {
                stats.unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The logger thread: writes what is queued as a batch, then pauses while events keep
/// coming (so tasks queue them without a wake-up), and waits for the next one only once a
/// pause brought none.
fn write_batches(receiver: &Receiver<Message>, writer: &mut dyn Write) {
    let mut batch = Batcher {
        writer,
        pending: Vec::with_capacity(BATCH),
        written: Vec::with_capacity(BATCH),
    };
    loop {
        let Ok(message) = receiver.recv() else { return };
        batch.handle(message);
        // Busy: a batch at a time, then a pause in which nobody needs to wake us (a
        // `recv_timeout` would be woken by every event); idle again once a pause brought
        // nothing.
        loop {
            while let Ok(message) = receiver.try_recv() {
                batch.handle(message);
            }
            batch.flush();
            #[expect(
                clippy::disallowed_methods,
                reason = "a pace between batches, not a wait for a condition"
            )]
            std::thread::sleep(BATCH_PAUSE);
            match receiver.try_recv() {
                Ok(message) => batch.handle(message),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    batch.flush();
                    return;
                }
            }
        }
        batch.flush();
    }
}

/// `k="v"` pairs as g3's text formats write them: strings quoted with `"` and `\` escaped,
/// numbers bare, `, ` between.
pub fn key_values<'a>(
    fields: impl IntoIterator<Item = (&'static str, Value<'a>)>,
    separator: &str,
    out: &mut String,
) {
    for (index, (key, value)) in fields.into_iter().enumerate() {
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
                escaped(text, out);
                out.push('"');
            }
        }
    }
}

/// `text` escaped as g3's text formats escape values and messages (`char::escape_debug`).
pub fn escaped(text: &str, out: &mut String) {
    let plain = |b: u8| (b' '..=b'~').contains(&b) && !matches!(b, b'"' | b'\'' | b'\\');
    if text.bytes().all(plain) {
        out.push_str(text);
    } else {
        out.extend(text.chars().flat_map(char::escape_debug));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_their_display() {
        for text in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:443",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut event = Event::new();
            event
                .addr("a", addr)
                .opt_addr("b", Some(addr))
                .opt_addr("c", None);
            let fields: Vec<_> = event.fields().collect();
            assert_eq!(fields, [("a", Value::Str(text)), ("b", Value::Str(text))]);
        }
    }
}
