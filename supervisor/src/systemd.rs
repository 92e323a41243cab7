//! Everything the supervisor says to systemd, and the only place that does: READY, STATUS,
//! MAINPID, and the listeners kept in the service's file descriptor store so that a
//! `systemctl restart` hands them to our successor as `LISTEN_FDS`. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::os::fd::{FromRawFd, OwnedFd};

use sd_notify::NotifyState;

use crate::listeners::{ListenerKey, ListenerSet};

pub fn is_present() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

pub fn ready(status: &str) {
    let pid = std::process::id();
    let _ = sd_notify::notify(&[
        NotifyState::MainPid(pid),
        NotifyState::Status(status),
        NotifyState::Ready,
    ]);
}

pub fn status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Keeps a copy of each listener in systemd's fd store (duplicates are ignored by systemd).
pub fn store_listeners(listeners: &ListenerSet, keys: &[ListenerKey]) {
    if !is_present() {
        return;
    }
    for key in keys {
        let Some(fd) = listeners.duplicate(key) else {
            continue;
        };
        let name = key.fd_name();
        let stored = sd_notify::notify_with_fds(
            &[NotifyState::FdStore, NotifyState::FdName(&name)],
            &[std::os::fd::AsFd::as_fd(&fd)],
        );
        if let Err(e) = stored {
            tracing::warn!(
                "cannot keep listener {} in the systemd fd store: {e}",
                key.address
            );
        }
    }
}

/// Drops closed listeners from the fd store so a successor does not resurrect them.
pub fn forget_listeners(keys: &[ListenerKey]) {
    if !is_present() {
        return;
    }
    for key in keys {
        let name = key.fd_name();
        let _ = sd_notify::notify(&[NotifyState::FdStoreRemove, NotifyState::FdName(&name)]);
    }
}

/// Listeners systemd gave us back (`LISTEN_FDS`/`LISTEN_FDNAMES`). Must run before any thread
/// starts, since it clears those variables from our environment.
pub fn take_listen_fds() -> Vec<(ListenerKey, OwnedFd)> {
    // Safety: called first thing in main, before the runtime or any other thread exists.
    let Ok(fds) = (unsafe { sd_notify::listen_fds_with_names_and_unset_env() }) else {
        return Vec::new();
    };
    let mut adopted = Vec::new();
    for (raw, name) in fds {
        // systemd passed these descriptors to us and nothing else owns them.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        match ListenerKey::from_fd_name(&name) {
            Some(key) => adopted.push((key, fd)),
            // The process log starts after this (its writer is a thread): straight to stderr.
            None => eprintln!(
                "g3proxy[{}] warn: ignoring unknown descriptor {name:?} from systemd",
                std::process::id()
            ),
        }
    }
    adopted
}
