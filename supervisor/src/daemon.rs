//! `g3proxy -d -p FILE`: the supervisor leaves the terminal as a classic daemon, after its
//! config has loaded (an error is said where the operator typed the command). The pid file is
//! locked before the fork, so a second daemon of the same file is refused on the terminal
//! too; the lock lives as long as the daemon, and the pid written is the daemon's own.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};

/// Forks into the background (new session, `/` as working directory, standard streams on
/// `/dev/null`) and writes our pid into `pid_file`. Call it before any thread exists.
pub fn daemonize(pid_file: &Path) -> anyhow::Result<()> {
    let file = File::options()
        .create(true)
        .write(true)
        .truncate(false)
        .open(pid_file)
        .with_context(|| format!("cannot open pid file {}", pid_file.display()))?;
    let mut locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "pid file {} is locked: another g3proxy runs with it ({e})",
            pid_file.display()
        )
    })?;
    // The lock belongs to the open file, which the child inherits; the parent exits.
    nix::unistd::daemon(false, false).context("cannot daemonize")?;
    locked.set_len(0).context("cannot truncate the pid file")?;
    writeln!(locked, "{}", std::process::id()).context("cannot write the pid file")?;
    // Held until the process exits.
    std::mem::forget(locked);
    Ok(())
}
