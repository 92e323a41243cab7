//! systemd's side of the notify protocol, for tests: a datagram socket passed as
//! `NOTIFY_SOCKET` that records `READY=1`, `STATUS=` and `MAINPID=`, and keeps descriptors
//! sent with `FDSTORE=1` under their `FDNAME=` as systemd's fd store does. It can then start
//! a program the way systemd does, with `LISTEN_FDS`/`LISTEN_FDNAMES`/`LISTEN_PID`.

use std::ffi::OsString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

pub struct NotifySocket {
    pub path: PathBuf,
    socket: UnixDatagram,
    /// The fd store: name → descriptor, in the order first stored.
    pub stored: Vec<(String, OwnedFd)>,
    pub messages: Vec<String>,
}

impl NotifySocket {
    pub fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            path,
            socket,
            stored: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Receives one datagram within `timeout`, applying fd-store requests.
    fn receive(&mut self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .ok()?;
        let mut buffer = vec![0u8; 8192];
        let mut control = nix::cmsg_space!([RawFd; 64]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().ok()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // The kernel installed these in our table just now.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let length = message.bytes;
        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("FDNAME="))
            .unwrap_or("stored")
            .to_string();
        if text.lines().any(|l| l == "FDSTORE=1") {
            for fd in fds {
                if !self.stored.iter().any(|(n, _)| *n == name) {
                    self.stored.push((name.clone(), fd));
                }
            }
        }
        if text.lines().any(|l| l == "FDSTOREREMOVE=1") {
            self.stored.retain(|(n, _)| *n != name);
        }
        self.messages.push(text.clone());
        Some(text)
    }

    /// Waits for a message with a line equal to `line` (such as `READY=1`).
    pub fn wait_for(&mut self, line: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for {line} on NOTIFY_SOCKET; got {:?}",
                    self.messages
                );
            }
            if let Some(text) = self.receive(left)
                && text.lines().any(|l| l == line)
            {
                return text;
            }
        }
    }

    /// Takes in whatever arrived without waiting long.
    pub fn drain_pending(&mut self) {
        while self.receive(Duration::from_millis(20)).is_some() {}
    }

    /// A command that starts `program` as systemd starts a service: `NOTIFY_SOCKET`, and the
    /// stored descriptors as fds 3.. with `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID`.
    /// `LISTEN_PID` must be the service's own pid, known only after fork: a shell sets it to
    /// its `$$` and then execs the program, which keeps that pid.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
            .arg(program)
            .args(args);
        command
            .env("NOTIFY_SOCKET", &self.path)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
        if self.stored.is_empty() {
            return command;
        }
        let names: Vec<&str> = self.stored.iter().map(|(n, _)| n.as_str()).collect();
        let sources: Vec<RawFd> = self.stored.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        command
            .env("LISTEN_FDS", sources.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
        // Safety: only fcntl, dup2 and close, all async-signal-safe, run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let mut moved = Vec::with_capacity(sources.len());
                for &fd in &sources {
                    let high = libc::fcntl(fd, libc::F_DUPFD, 100);
                    if high < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    moved.push(high);
                }
                for (index, &fd) in moved.iter().enumerate() {
                    if libc::dup2(fd, 3 + index as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        command
    }
}
