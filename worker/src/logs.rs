//! The worker's process log: one line per event on stderr, which the supervisor passes on
//! (to the terminal, or to journald under systemd). Structured task logs come with the `log`
//! section's own issue.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

// Set once before any task runs; a process-wide logger is the one static the worker keeps.
static PREFIX: OnceLock<String> = OnceLock::new();
static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Every line names the generation, worker index and pid.
pub fn init(generation: u64, worker_index: usize, verbosity: u8) {
    let _ = PREFIX.set(format!(
        "g3proxy-worker[gen {generation} #{worker_index} pid {}]",
        std::process::id()
    ));
    VERBOSITY.store(verbosity, Ordering::Relaxed);
}

/// `level`: 0 warn, 1 info, 2 debug, as the supervisor's `-v` count.
pub fn event(level: u8, message: fmt::Arguments<'_>) {
    if level > VERBOSITY.load(Ordering::Relaxed) {
        return;
    }
    let prefix = PREFIX.get().map(String::as_str).unwrap_or("g3proxy-worker");
    let name = ["warn", "info", "debug"][level.min(2) as usize];
    eprintln!("{prefix} {name}: {message}");
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
