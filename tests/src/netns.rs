//! A network namespace held open by a child process, for tests that need hosts of their own
//! (a scanner on the network, a client behind a gateway). Commands run inside it through
//! `nsenter`; the namespace goes with the test, even a killed one (the holder dies with it).
//! Needs root.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait_until;

pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> Netns {
        let mut command = Command::new("unshare");
        command
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches only this child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let holder = command.spawn().expect("unshare");
        let pid = holder.id();
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        wait_until(Duration::from_secs(5), "a new network namespace", || {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()
                .filter(|ns| *ns != ours)
        });
        Netns { holder }
    }

    /// The holder's pid, which names the namespace to `ip … netns` and `nsenter`.
    pub fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// `program` to be run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.pid(), "-n", program]);
        command
    }

    /// Runs `program args` inside, and insists that it succeeds.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self.command(program).args(args).output().expect("nsenter");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
