//! Structured logs (the `log` section): events with g3proxy's field names, written by a
//! thread of their own per logger through the driver the config names (one file per
//! driver). A proxy task never waits on a log, and hands its events over without touching
//! anything another thread writes: each thread keeps an outbox per logger, which the
//! logger thread empties every few milliseconds. An outbox holds a bounded number of
//! events; beyond it they are dropped and counted, as g3's `ChannelOverflow`.
//!
//! Every event carries g3's shared keys: `daemon_name` (the group), `pid`, `log_type`.

mod datagrams;
mod event;
mod fluentd;
mod journal;
mod stdout;
mod syslog;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use g3proxy_shared::config::log::LogDriver;

pub use event::{Event, Rendered, Value};
use event::{Scratch, keep_spares, push_decimal};

/// Events one thread may hold for one logger until the logger thread takes them; beyond
/// this many, new ones are dropped.
const OUTBOX_MAX: usize = 4096;

/// How long a busy logger thread pauses between batches. While it pauses nothing wakes it:
/// tasks add to their outboxes without a system call.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// Events sent at most by one call of a driver's `flush`.
const BATCH: usize = 256;

/// Every logger thread's channel, for [`flush_all`] as the worker exits.
static LOGGERS: Mutex<Vec<Arc<Channel>>> = Mutex::new(Vec::new());

/// `getpid` is a system call each time, and every event names the process.
static PID: LazyLock<u64> = LazyLock::new(|| u64::from(std::process::id()));

/// This process's id, read once (`getpid` is a system call, and every event and task id
/// carries it).
pub fn pid() -> u32 {
    *PID as u32
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

/// How a driver writes events; each runs on its logger's thread. Events are encoded into a
/// batch as they come and sent together, a system call per batch rather than per event.
trait Write: Send {
    /// Adds `event` to the batch; answers its size in bytes.
    fn write(&mut self, event: Rendered<'_>) -> usize;

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
    /// Events dropped because the outbox was full (`drop_type: ChannelOverflow`), the
    /// logger thread was gone (`ChannelClosed`), or the peer did not take them
    /// (`PeerUnreachable`).
    pub overflow: AtomicU64,
    pub closed: AtomicU64,
    pub unreachable: AtomicU64,
}

/// One thread's events for one module's logger, waiting for the logger thread, and the
/// events it wrote, given back for the thread to reuse. Only its thread and, every few
/// milliseconds, the logger thread lock it.
struct Outbox {
    stats: Arc<LoggerStats>,
    lists: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    waiting: Vec<Event>,
    written: Vec<Event>,
}

impl Outbox {
    fn lists(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the waiting events, leaving `empty` (a list the logger thread reuses).
    fn take(&self, empty: &mut Vec<Event>) {
        std::mem::swap(&mut self.lists().waiting, empty);
    }

    /// Gives back `events`, written and cleared, for the thread to reuse.
    fn give_back(&self, events: &mut Vec<Event>) {
        let mut lists = self.lists();
        let room = OUTBOX_MAX.saturating_sub(lists.written.len());
        lists.written.extend(events.drain(..).take(room));
        events.clear();
    }

    fn is_empty(&self) -> bool {
        self.lists().waiting.is_empty()
    }
}

/// What a logger thread shares with the threads that log.
struct Channel {
    /// Every outbox of every thread, for the logger thread to empty.
    outboxes: Mutex<Vec<Arc<Outbox>>>,
    /// Set by the logger thread before it waits with nothing to write; the next event wakes
    /// it. While it is busy nobody does.
    idle: AtomicBool,
    wake: SyncSender<Control>,
}

enum Control {
    /// An event came while the logger thread was idle.
    Wake,
    /// Answered once everything logged before it is written.
    Flush(SyncSender<()>),
}

thread_local! {
    /// This thread's outboxes, by the address of the counts of the handle they are for
    /// (the outbox keeps those counts, so the address is not reused while it lives).
    static OUTBOXES: RefCell<Vec<(usize, Arc<Outbox>)>> = const { RefCell::new(Vec::new()) };
}

/// A logger of one kind (`task`, ...): its thread and driver. Each module logs through a
/// handle of its own ([`Logger::named`]: `lt-<server>`, `le-<escaper>`, `lr-<resolver>`, as
/// g3 names its loggers), which shares the thread and keeps its own counts for the
/// `logger.*` metrics.
pub struct Logger {
    channel: Arc<Channel>,
    /// g3's `log_type` (`Task`, `Escape`, `Resolve`).
    pub kind: &'static str,
    /// g3's logger name, the `logger` tag of its metrics.
    pub name: Arc<str>,
    daemon_name: Arc<str>,
    pub stats: Arc<LoggerStats>,
    /// The handles made from this logger, for the metrics.
    handles: Mutex<Vec<Arc<Logger>>>,
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
        let writer: Box<dyn Write> = match driver {
            LogDriver::Discard => return Ok(None),
            LogDriver::Stdout => Box::new(stdout::Stdout::default()),
            LogDriver::Journal(config) => Box::new(journal::Journal::new(config, ident)?),
            LogDriver::Syslog(config) => Box::new(syslog::Syslog::new(config, ident)?),
            LogDriver::Fluentd(config) => Box::new(fluentd::Fluentd::new(config, kind)),
        };
        Logger::with_writer(writer, kind, daemon_name).map(Some)
    }

    /// A logger writing through `writer` on a thread of its own.
    fn with_writer(
        mut writer: Box<dyn Write>,
        kind: &'static str,
        daemon_name: &str,
    ) -> anyhow::Result<Arc<Logger>> {
        // Few messages ever wait here: a wake-up is sent once per idle spell.
        let (wake, control) = mpsc::sync_channel(16);
        let channel = Arc::new(Channel {
            outboxes: Mutex::new(Vec::new()),
            idle: AtomicBool::new(true),
            wake,
        });
        let thread_channel = channel.clone();
        std::thread::Builder::new()
            .name(format!("log-{}", kind.to_ascii_lowercase()))
            .spawn(move || write_batches(&thread_channel, &control, writer.as_mut()))?;
        LOGGERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(channel.clone());
        Ok(Arc::new(Logger {
            channel,
            kind,
            name: kind.to_ascii_lowercase().into(),
            daemon_name: daemon_name.into(),
            stats: Arc::default(),
            handles: Mutex::new(Vec::new()),
        }))
    }

    /// A handle for one module, named `name` in the metrics.
    pub fn named(&self, name: String) -> Arc<Logger> {
        let handle = Arc::new(Logger {
            channel: self.channel.clone(),
            kind: self.kind,
            name: name.into(),
            daemon_name: self.daemon_name.clone(),
            stats: Arc::default(),
            handles: Mutex::new(Vec::new()),
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

    /// Hands `event` with the shared keys to the logger thread, or drops it when this
    /// thread's outbox is full.
    pub fn log(&self, mut event: Event) {
        event
            .text("daemon_name", &self.daemon_name)
            .int("pid", *PID)
            .text("log_type", self.kind);
        let mut event = Some(event);
        let added = OUTBOXES
            .try_with(|outboxes| match event.take() {
                Some(event) => self.add(&mut outboxes.borrow_mut(), event),
                None => Ok(()),
            })
            .unwrap_or_else(|_| match event.take() {
                // This thread is ending: the event goes in an outbox of its own, which the
                // logger thread lets go once it has emptied it.
                Some(event) => self.add(&mut Vec::new(), event),
                None => Ok(()),
            });
        if added.is_err() {
            self.stats.total.fetch_add(1, Ordering::Relaxed);
            self.stats.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Paired with the logger thread's fence between marking itself idle and looking
        // at the outboxes: either it sees this event, or this sees it idle.
        fence(Ordering::SeqCst);
        if self.channel.idle.load(Ordering::Relaxed)
            && self.channel.idle.swap(false, Ordering::AcqRel)
        {
            match self.channel.wake.try_send(Control::Wake) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    self.stats.closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Adds `event` to this handle's outbox among `outboxes` (made the first time);
    /// answers the event back if the outbox is full.
    fn add(&self, outboxes: &mut Vec<(usize, Arc<Outbox>)>, event: Event) -> Result<(), Event> {
        let key = Arc::as_ptr(&self.stats) as usize;
        let index = match outboxes.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                let outbox = Arc::new(Outbox {
                    stats: self.stats.clone(),
                    lists: Mutex::default(),
                });
                self.channel.outboxes().push(outbox.clone());
                outboxes.push((key, outbox));
                outboxes.len() - 1
            }
        };
        let mut lists = outboxes[index].1.lists();
        if lists.waiting.len() >= OUTBOX_MAX {
            return Err(event);
        }
        lists.waiting.push(event);
        if !lists.written.is_empty() {
            keep_spares(&mut lists.written);
        }
        Ok(())
    }
}

/// Waits (up to `timeout` in all) until every logger has written what was logged: as the
/// worker exits, so that the last tasks' events are not lost with the process.
pub fn flush_all(timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let channels = LOGGERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for channel in channels {
        channel.flush(deadline);
    }
}

impl Channel {
    fn outboxes(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Outbox>>> {
        self.outboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (until `deadline`) for the logger thread to write what was logged so far.
    fn flush(&self, deadline: std::time::Instant) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.wake.try_send(Control::Flush(done)).is_ok() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = wait.recv_timeout(left);
        }
    }
}

/// The logger thread's state: the driver, and the events written into its batch and not
/// sent yet, by the counts of the handle each came through and its size.
struct Batcher<'w> {
    writer: &'w mut dyn Write,
    scratch: Scratch,
    pending: Vec<(Arc<LoggerStats>, usize)>,
    /// An outbox's events as taken.
    taken: Vec<Event>,
    /// The same written and cleared, to give back.
    written: Vec<Event>,
}

impl Batcher<'_> {
    /// Writes what every outbox holds; answers how many events that was.
    fn collect(&mut self, channel: &Channel) -> usize {
        let outboxes = channel.outboxes().clone();
        let mut count = 0;
        for outbox in &outboxes {
            outbox.take(&mut self.taken);
            count += self.taken.len();
            outbox
                .stats
                .total
                .fetch_add(self.taken.len() as u64, Ordering::Relaxed);
            let mut taken = std::mem::take(&mut self.taken);
            for mut event in taken.drain(..) {
                let bytes = self.writer.write(event.render(&mut self.scratch));
                self.pending.push((outbox.stats.clone(), bytes));
                if event.clear() {
                    self.written.push(event);
                }
                if self.pending.len() >= BATCH {
                    self.flush();
                }
            }
            self.taken = taken;
            outbox.give_back(&mut self.written);
        }
        self.flush();
        // Outboxes of threads that ended (held here and by the channel only), once emptied:
        // nobody adds to them any more.
        let ended = outboxes.iter().any(|o| Arc::strong_count(o) == 2);
        drop(outboxes);
        if ended {
            channel
                .outboxes()
                .retain(|o| Arc::strong_count(o) > 1 || !o.is_empty());
        }
        count
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
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

/// The logger thread: empties the outboxes every [`BATCH_PAUSE`] while events keep coming,
/// and once a round found none, waits to be woken by the next one.
fn write_batches(channel: &Channel, control: &Receiver<Control>, writer: &mut dyn Write) {
    let mut batch = Batcher {
        writer,
        scratch: Scratch::default(),
        pending: Vec::with_capacity(BATCH),
        written: Vec::with_capacity(BATCH),
        taken: Vec::new(),
    };
    let mut idle = true;
    loop {
        let message = if idle {
            control.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            control.recv_timeout(BATCH_PAUSE)
        };
        let flushed = match message {
            Ok(Control::Flush(done)) => Some(done),
            Ok(Control::Wake) | Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                batch.collect(channel);
                return;
            }
        };
        idle = batch.collect(channel) == 0;
        if let Some(done) = flushed {
            let _ = done.send(());
        }
        if idle {
            channel.idle.store(true, Ordering::Relaxed);
            // Paired with the fence in `Logger::log`: an event added before this either
            // is seen now or saw the flag, and sent a wake-up.
            fence(Ordering::SeqCst);
            if channel.outboxes().iter().any(|o| !o.is_empty()) {
                // Somebody may have taken the flag and sent a wake-up already; it only
                // makes the next pause shorter.
                channel.idle.store(false, Ordering::Relaxed);
                idle = false;
            }
        }
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
            Value::Int(n) => push_decimal(out, n),
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

    /// A driver that keeps what it is given, and can be held up.
    #[derive(Clone, Default)]
    struct Memory {
        written: Arc<Mutex<Vec<String>>>,
        /// While held, `write` waits.
        gate: Arc<Mutex<()>>,
    }

    impl Write for Memory {
        fn write(&mut self, event: Rendered<'_>) -> usize {
            drop(self.gate.lock().unwrap());
            let mut line = String::new();
            key_values(event.fields(), "=", &mut line);
            self.written.lock().unwrap().push(line);
            1
        }

        fn flush(&mut self) -> usize {
            usize::MAX
        }
    }

    /// A driver whose peer takes the first so many events of a batch.
    struct Takes(usize);

    impl Write for Takes {
        fn write(&mut self, _: Rendered<'_>) -> usize {
            0
        }

        fn flush(&mut self) -> usize {
            self.0
        }
    }

    #[test]
    fn a_batch_cut_short_counts_each_handle_up_to_the_cut() {
        // A batch of 1 event of handle a (1 byte), 3 of b (10 bytes each), 2 more of a: what
        // each handle passed (events, bytes) and lost, by how many the peer took.
        for (takes, a_counts, b_counts) in [
            (0, (0, 0, 3), (0, 0, 3)),
            (2, (1, 1, 2), (1, 10, 2)),
            (5, (2, 2, 1), (3, 30, 0)),
            (usize::MAX, (3, 3, 0), (3, 30, 0)),
        ] {
            let (a, b) = (Arc::<LoggerStats>::default(), Arc::<LoggerStats>::default());
            let mut writer = Takes(takes);
            let mut batch = Batcher {
                writer: &mut writer,
                scratch: Scratch::default(),
                pending: [(&a, 1), (&b, 10), (&b, 10), (&b, 10), (&a, 1), (&a, 1)]
                    .map(|(stats, size)| (Arc::clone(stats), size))
                    .to_vec(),
                taken: Vec::new(),
                written: Vec::new(),
            };
            batch.flush();
            assert!(batch.pending.is_empty());
            for (stats, counts) in [(&a, a_counts), (&b, b_counts)] {
                let got = (
                    stats.passed.load(Ordering::Relaxed),
                    stats.bytes.load(Ordering::Relaxed),
                    stats.unreachable.load(Ordering::Relaxed),
                );
                assert_eq!(got, counts, "the peer took {takes}");
            }
        }
    }

    /// Checks that the outboxes of threads that ended are let go once emptied.
    fn outboxes_let_go(logger: &Logger) {
        settled(logger);
        assert!(logger.channel.outboxes.lock().unwrap().is_empty());
    }

    fn settled(logger: &Logger) {
        logger
            .channel
            .flush(std::time::Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn events_of_threads_that_ended_all_arrive_in_order() {
        let memory = Memory::default();
        let logger = Logger::with_writer(Box::new(memory.clone()), "Task", "group").unwrap();
        let handle = logger.named("lt-test".into());
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let handle = &handle;
                scope.spawn(move || {
                    for n in 0..1000 {
                        let mut event = Event::new();
                        event.int("thread", thread).int("n", n);
                        handle.log(event);
                    }
                });
            }
        });
        settled(&logger);
        let written = memory.written.lock().unwrap().clone();
        assert_eq!(written.len(), 4000);
        for thread in 0..4 {
            let ns: Vec<u64> = written
                .iter()
                .filter(|line| line.starts_with(&format!("thread={thread},")))
                .map(|line| {
                    line.split("n=")
                        .nth(1)
                        .unwrap()
                        .split(',')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(ns, (0..1000).collect::<Vec<_>>());
        }
        assert!(
            written[0].contains(r#"daemon_name="group", pid="#),
            "{}",
            written[0]
        );
        assert_eq!(handle.stats.total.load(Ordering::Relaxed), 4000);
        assert_eq!(handle.stats.passed.load(Ordering::Relaxed), 4000);
        outboxes_let_go(&logger);
    }

    #[test]
    fn an_idle_logger_is_woken_by_the_next_event() {
        let memory = Memory::default();
        let logger = Logger::with_writer(Box::new(memory.clone()), "Task", "group").unwrap();
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::yield_now();
            }
        };
        for round in 0..3 {
            logger.log(Event::new());
            until("written", &|| memory.written.lock().unwrap().len() > round);
            // A round that finds nothing leaves the thread idle, for the next event to wake.
            until("idle", &|| logger.channel.idle.load(Ordering::SeqCst));
        }
    }

    /// Logs an event as its thread ends, saying whether the thread's outboxes were gone
    /// by then.
    struct LogsAtExit(Arc<Logger>);

    impl Drop for LogsAtExit {
        fn drop(&mut self) {
            let gone = OUTBOXES.try_with(|_| ()).is_err();
            let mut event = Event::new();
            event
                .text("at", "exit")
                .int("outboxes_gone", u64::from(gone));
            self.0.log(event);
        }
    }

    thread_local! {
        static AT_EXIT: RefCell<Option<LogsAtExit>> = const { RefCell::new(None) };
    }

    #[test]
    fn a_thread_that_is_ending_still_logs() {
        let memory = Memory::default();
        let logger = Logger::with_writer(Box::new(memory.clone()), "Task", "group").unwrap();
        let handle = logger.clone();
        std::thread::spawn(move || {
            // Thread-locals are destroyed in the reverse order of their first use: this one
            // after the outboxes, which the event below makes.
            AT_EXIT.with(|at_exit| *at_exit.borrow_mut() = Some(LogsAtExit(handle.clone())));
            let mut event = Event::new();
            event.text("at", "body");
            handle.log(event);
        })
        .join()
        .unwrap();
        settled(&logger);
        let written = memory.written.lock().unwrap().clone();
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(written[0].starts_with(r#"at="body""#), "{}", written[0]);
        assert!(
            written[1].starts_with(r#"at="exit", outboxes_gone=1,"#),
            "{}",
            written[1]
        );
        assert_eq!(logger.stats.passed.load(Ordering::Relaxed), 2);
        // The outbox made for the ending thread's last event is let go too.
        outboxes_let_go(&logger);
    }

    #[test]
    fn a_full_outbox_drops_and_counts() {
        let memory = Memory::default();
        let logger = Logger::with_writer(Box::new(memory.clone()), "Task", "group").unwrap();
        let held = memory.gate.lock().unwrap();
        let logged = OUTBOX_MAX * 2 + 10;
        for _ in 0..logged {
            logger.log(Event::new());
        }
        drop(held);
        settled(&logger);
        let stats = &logger.stats;
        let passed = stats.passed.load(Ordering::Relaxed);
        let overflow = stats.overflow.load(Ordering::Relaxed);
        assert!(overflow >= 10, "{overflow}");
        assert_eq!(passed + overflow, logged as u64);
        assert_eq!(stats.total.load(Ordering::Relaxed), logged as u64);
        assert_eq!(memory.written.lock().unwrap().len() as u64, passed);
    }
}
