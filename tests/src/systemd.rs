//! A real systemd for tests: systemd booted as PID 1 of a new PID and mount namespace (same
//! network namespace, so the proxy is reachable on loopback), with a private `/run` holding
//! the units under test and a target that starts nothing else. `systemctl` and other
//! commands run inside it through `nsenter`.
//!
//! The machine's file systems are shared with that namespace, so boot-time units must not
//! run: `systemd-tmpfiles` would empty the host's `/tmp`, others would touch sysctls and
//! devices. The namespace gets its own `/tmp`, `/var/tmp` and `/run`, the boot targets and
//! services are masked, and units under test must say `DefaultDependencies=no`. It is only
//! ever stopped with SIGKILL: SIGTERM makes systemd re-execute and carry on.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait_until;

pub struct RealSystemd {
    unshare: Child,
    /// systemd's pid as seen from outside the namespace.
    pub pid: u32,
}

impl RealSystemd {
    /// Boots systemd with the unit files of `units` in /run/systemd/system. `None` when this
    /// machine cannot (not root, no unshare, no systemd binary). `keep` names directories the
    /// test needs inside (the binaries, the group's files): those under `/tmp` or `/var/tmp`,
    /// as in a checkout under `/tmp`, are bound back over the namespace's own tmpfs.
    pub fn boot(units: &Path, keep: &[&Path]) -> Option<RealSystemd> {
        if !Path::new("/lib/systemd/systemd").exists() || unsafe { libc::geteuid() } != 0 {
            return None;
        }
        const MASKED: &str = "sysinit.target basic.target local-fs.target swap.target sockets.target timers.target \
             systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.timer \
             systemd-tmpfiles-clean.service systemd-udevd.service systemd-udev-trigger.service systemd-sysctl.service \
             systemd-remount-fs.service systemd-journald.service systemd-journald.socket systemd-random-seed.service \
             systemd-timesyncd.service systemd-pstore.service network.target network-pre.target network-online.target \
             multi-user.target getty.target remote-fs.target";
        // The host's /tmp and /var/tmp stay reachable under /run/.host until the kept
        // directories are bound back; then that view goes away.
        let mut rebind = String::new();
        for dir in keep {
            for shadowed in ["/tmp", "/var/tmp"] {
                if let Ok(rest) = dir.strip_prefix(shadowed) {
                    let inside = format!("/run/.host{shadowed}/{}", rest.display());
                    rebind.push_str(&format!(
                        "mkdir -p '{0}'; mount --bind '{inside}' '{0}'; ",
                        dir.display()
                    ));
                }
            }
        }
        let script = format!(
            "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /run; \
             mkdir -p /run/.host/tmp /run/.host/var/tmp; \
             mount --bind /tmp /run/.host/tmp; mount --bind /var/tmp /run/.host/var/tmp; \
             for dir in /tmp /var/tmp; do mount -t tmpfs tmpfs $dir; done; {rebind}\
             umount /run/.host/tmp /run/.host/var/tmp; rmdir /run/.host/tmp /run/.host/var/tmp /run/.host/var /run/.host; \
             mkdir -p /run/systemd/system; cp {}/* /run/systemd/system/; \
             for unit in {MASKED}; do ln -sf /dev/null /run/systemd/system/$unit; done; \
             exec /lib/systemd/systemd --system --unit=g3test.target",
            units.display()
        );
        std::fs::write(
            units.join("g3test.target"),
            "[Unit]\nDescription=only what the test starts\n",
        )
        .ok()?;
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut booted = RealSystemd { pid: 0, unshare };
        let unshare_pid = booted.unshare.id();
        booted.pid = wait_until(
            Duration::from_secs(20),
            "systemd to start in its namespace",
            || {
                let children = std::fs::read_to_string(format!(
                    "/proc/{unshare_pid}/task/{unshare_pid}/children"
                ))
                .ok()?;
                let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == "systemd").then_some(pid)
            },
        );
        let running = crate::try_wait_until(Duration::from_secs(30), || {
            let state = booted.run(&["systemctl", "is-system-running"]);
            let text = String::from_utf8_lossy(&state.stdout).trim().to_string();
            matches!(text.as_str(), "running" | "degraded").then_some(())
        });
        running.map(|_| booted)
    }

    /// Runs a command inside systemd's namespaces.
    pub fn run(&self, command: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "--"])
            .args(command)
            .output()
            .expect("nsenter")
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut command = vec!["systemctl", "--no-pager"];
        command.extend_from_slice(args);
        self.run(&command)
    }

    /// A unit property, such as `MainPID`.
    pub fn property(&self, unit: &str, name: &str) -> String {
        let output = self.systemctl(&["show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for RealSystemd {
    fn drop(&mut self) {
        // PID 1 of the namespace going away takes every process in it along.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A group's `g3proxy@.service` running under a [`RealSystemd`]: the unit's text with its
/// paths moved (binaries from `bin_dir`, the config from the group's directory) and
/// `DefaultDependencies=no`. Shared by the test of the repository's unit and the test of the
/// installed package.
pub struct UnitRun<'a> {
    pub systemd: RealSystemd,
    pub service: String,
    group: &'a crate::Group,
    bin_dir: std::path::PathBuf,
}

impl<'a> UnitRun<'a> {
    /// Boots systemd with `unit` (the text of a `g3proxy@.service`) for `group`, which must
    /// live outside `/tmp` or in `keep`, as must `bin_dir`.
    pub fn boot(group: &'a crate::Group, unit: &str, bin_dir: &Path) -> UnitRun<'a> {
        let units = group.dir.join("units");
        std::fs::create_dir_all(&units).expect("units dir");
        UnitRun::write_unit(&units, unit, bin_dir, group);
        let keep = [bin_dir, group.dir.as_path()];
        let Some(systemd) = RealSystemd::boot(&units, &keep) else {
            panic!(
                "systemd cannot boot in a namespace on this machine (needs root, unshare and /lib/systemd/systemd)"
            );
        };
        UnitRun {
            systemd,
            service: format!("g3proxy@{}.service", group.name),
            group,
            bin_dir: bin_dir.to_path_buf(),
        }
    }

    fn write_unit(units: &Path, unit: &str, bin_dir: &Path, group: &crate::Group) {
        let unit = unit
            .replace("/usr/bin/", &format!("{}/", bin_dir.display()))
            .replace("/etc/g3proxy/%i/", &format!("{}/", group.dir.display()))
            .replace("[Unit]\n", "[Unit]\nDefaultDependencies=no\n");
        std::fs::write(units.join("g3proxy@.service"), unit).expect("unit file");
    }

    /// Replaces the unit's text (a package upgrade); `systemctl daemon-reload` reads it.
    pub fn replace_unit(&self, unit: &str) {
        let units = self.group.dir.join("units");
        UnitRun::write_unit(&units, unit, &self.bin_dir, self.group);
        // The namespace has its own /run: the unit under test is copied there at boot.
        let copy = format!(
            "cp {}/g3proxy@.service /run/systemd/system/g3proxy@.service",
            units.display()
        );
        let output = self.systemd.run(&["sh", "-c", &copy]);
        assert!(output.status.success(), "{output:?}");
    }

    /// `systemctl ARGS` for this unit (the service name is appended), which must succeed.
    pub fn systemctl(&self, verb: &str) -> Output {
        check(
            self.systemd.systemctl(&[verb, &self.service]),
            &format!("systemctl {verb}"),
        )
    }

    pub fn property(&self, name: &str) -> String {
        self.systemd.property(&self.service, name)
    }

    /// `g3proxy-ctl -G GROUP ARGS` inside the namespace (the control directory is there).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let ctl = self.bin_dir.join("g3proxy-ctl").display().to_string();
        let mut command = vec![ctl.as_str(), "-G", self.group.name.as_str()];
        command.extend_from_slice(args);
        self.systemd.run(&command)
    }

    /// `systemctl restart` (the hot upgrade) while wrk runs at a high connection rate and a
    /// tunnel is open: nothing is lost, the tunnel keeps flowing, a new supervisor runs, and
    /// the old workers drain. Returns the new main pid.
    pub fn restart_under_load(&self, origin: &crate::Origin, echo: &crate::Echo) -> String {
        let proxy = self.group.http_proxy();
        let first_main = self.property("MainPID");
        let mut tunnel = crate::open_connect_tunnel(proxy, echo.addr);
        crate::roundtrip(&mut tunnel, b"before restart");
        let wrk = crate::Wrk::start(
            proxy,
            origin.addr,
            32,
            Duration::from_secs(8),
            &self.group.dir,
        );
        origin.wait_for_progress(3_000);
        self.systemctl("restart");
        let second_main = self.property("MainPID");
        assert_ne!(first_main, second_main, "a new supervisor runs");
        origin.wait_for_progress(3_000);
        crate::roundtrip(&mut tunnel, b"after restart");
        let result = wrk.finish();
        eprintln!(
            "systemctl restart under wrk: {} requests, {:.0}/s",
            result.requests, result.per_second
        );
        assert!(result.requests > 5_000, "{}", result.output);
        assert_eq!(
            (result.socket_errors, result.bad_status),
            (0, 0),
            "connections lost:\n{}",
            result.output
        );
        let fleet = check(self.ctl(&["--json", "fleet"]), "fleet");
        let fleet: serde_json::Value = serde_json::from_slice(&fleet.stdout).expect("fleet json");
        let adopted = fleet["fleet"]["generations"]
            .as_array()
            .expect("generations")
            .iter()
            .any(|g| g["state"] == "adopted");
        assert!(adopted, "the old workers drain: {fleet}");
        second_main
    }

    /// `systemctl stop`, and the listeners close.
    pub fn stop(&self) {
        self.systemctl("stop");
        assert_eq!(self.property("ActiveState"), "inactive");
        let proxy = self.group.http_proxy();
        wait_until(
            Duration::from_secs(30),
            "the listeners to close after stop",
            || std::net::TcpStream::connect(proxy).is_err().then_some(()),
        );
    }
}

/// `output`, which must be a success (else its output is the panic message).
pub fn check(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
