//! The worker's process log: one line per event, written to stderr (which the supervisor
//! passes on to the terminal, or to journald under systemd) by a thread of its own. A task
//! only formats its line and hands it over without waiting: when the writer falls behind
//! (stderr is a pipe someone stopped reading), lines are dropped and counted rather than
//! stalling a runtime thread, and the count is logged once the writer catches up. Task logs
//! with drivers come with the `log` section's own issue.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

// Set once before any task runs; a process-wide logger is the one static the worker keeps.
static PREFIX: OnceLock<String> = OnceLock::new();
static VERBOSITY: AtomicU8 = AtomicU8::new(0);
static WRITER: OnceLock<SyncSender<Line>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines waiting for the writer; past this they are dropped.
const QUEUE: usize = 8192;

enum Line {
    Text(String),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// Every line names the generation, worker index and pid.
pub fn init(generation: u64, worker_index: usize, verbosity: u8) {
    let _ = PREFIX.set(format!(
        "g3proxy-worker[gen {generation} #{worker_index} pid {}]",
        std::process::id()
    ));
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    let (sender, receiver) = sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("process-log".into())
        .spawn(move || write_lines(receiver));
    if spawned.is_ok() {
        let _ = WRITER.set(sender);
    }
}

fn write_lines(receiver: Receiver<Line>) {
    let stderr = std::io::stderr();
    for line in receiver {
        let mut out = stderr.lock();
        match line {
            Line::Text(text) => {
                let _ = writeln!(out, "{text}");
            }
            Line::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let prefix = PREFIX.get().map(String::as_str).unwrap_or("g3proxy-worker");
            let _ = writeln!(
                out,
                "{prefix} warn: {dropped} log lines dropped while the log was blocked"
            );
        }
    }
}

/// Whether lines of `level` are written (0 warn, 1 info, 2 debug).
pub fn enabled(level: u8) -> bool {
    level <= VERBOSITY.load(Ordering::Relaxed)
}

/// `level`: 0 warn, 1 info, 2 debug, as the supervisor's `-v` count.
pub fn event(level: u8, message: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let prefix = PREFIX.get().map(String::as_str).unwrap_or("g3proxy-worker");
    let name = ["warn", "info", "debug"][level.min(2) as usize];
    let text = format!("{prefix} {name}: {message}");
    match WRITER.get() {
        Some(writer) => match writer.try_send(Line::Text(text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(Line::Text(text))) => eprintln!("{text}"),
            Err(TrySendError::Disconnected(_)) => {}
        },
        // Before init (a start that failed early): nothing runs yet that could be blocked.
        None => eprintln!("{text}"),
    }
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

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::logs::event(1, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::logs::event(0, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::logs::event(2, format_args!($($arg)*)) };
}
