//! What every g3proxy process shares: the typed config model and its loader ([`config`]), the
//! messages that cross process boundaries ([`ipc`]), common value types ([`types`]) and the
//! per-user counters every process of a group shares ([`user_limits`]).
//!
//! The config model is plain data. The supervisor loads it to validate and to bind listeners;
//! each worker loads the same snapshot ([`config::ConfigBundle`]) to build its runtime objects.

pub mod config;
pub mod ipc;
pub mod logs;
pub mod statsd;
pub mod types;
pub mod user_limits;

/// The version every binary of this build reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
