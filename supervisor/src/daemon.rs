//! `g3proxy -d -p FILE`: the supervisor leaves the terminal as a classic daemon. The command
//! returns only once the daemon serves (exit 0), or failed to (exit 1, the reason in
//! syslog), so a script that starts it can rely on the answer; a config that does not load
//! is said on the terminal before the fork. The pid file is locked before the fork, so a
//! second daemon of the same file is refused on the terminal too; the lock lives as long as
//! the daemon, and the pid written is the daemon's own.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::ForkResult;

/// The pipe to the waiting parent, written once the first generation serves.
static WAITING_PARENT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Forks into the background (new session, `/` as working directory, standard streams on
/// `/dev/null`) and writes our pid into `pid_file`; the parent waits for
/// [`report_serving`] and exits. Call it before any thread exists.
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
    let (from_child, to_parent) = nix::unistd::pipe().context("cannot make a pipe")?;
    // SAFETY: no other thread exists yet, so the child's copy of the process is whole.
    match unsafe { nix::unistd::fork() }.context("cannot fork")? {
        ForkResult::Parent { .. } => {
            drop(to_parent);
            let mut byte = [0u8; 1];
            let served = matches!(nix::unistd::read(&from_child, &mut byte), Ok(1));
            if !served {
                eprintln!("g3proxy: the daemon did not start; its reason is in syslog");
            }
            std::process::exit(if served { 0 } else { 1 });
        }
        ForkResult::Child => drop(from_child),
    }
    nix::unistd::setsid().context("cannot start a session")?;
    std::env::set_current_dir("/").context("cannot change to /")?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    for stdio in [0, 1, 2] {
        // SAFETY: duplicating an open file onto the standard descriptors, which we own.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), stdio) } < 0 {
            anyhow::bail!("cannot redirect the standard streams to /dev/null");
        }
    }
    // The lock belongs to the open file, which only the child keeps once the parent exits.
    locked.set_len(0).context("cannot truncate the pid file")?;
    writeln!(locked, "{}", std::process::id()).context("cannot write the pid file")?;
    // Held until the process exits.
    std::mem::forget(locked);
    *WAITING_PARENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(to_parent);
    Ok(())
}

/// Tells the waiting parent that the daemon serves (once; nothing without `-d`).
pub fn report_serving() {
    if let Some(pipe) = WAITING_PARENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        let _ = nix::unistd::write(&pipe, b"1");
    }
}
