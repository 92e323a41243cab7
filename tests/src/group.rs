//! A daemon group under test: a scenario's `main.yml` with its ports filled in, a control
//! directory of its own, the supervisors started in it, and `g3proxy-ctl` pointed at it.
//! Dropping it kills every process of the group, supervisors and workers alike.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{bin, free_port, try_wait_until, wait_until};

pub struct Group {
    pub dir: PathBuf,
    pub control_dir: PathBuf,
    pub name: String,
    pub config: PathBuf,
    pub ports: HashMap<String, u16>,
    children: Vec<Child>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Group {
    /// Writes scenario `scenario` with fresh ports for every `{{NAME_port}}` placeholder.
    pub fn new(scenario: &str) -> Group {
        Self::new_in(scenario, &std::env::temp_dir())
    }

    /// The same, with the group's directory under `base`.
    pub fn new_in(scenario: &str, base: &Path) -> Group {
        Self::build(scenario, base, &[])
    }

    /// Writes scenario `scenario` with the ports of `preset` (servers the test already runs,
    /// other groups) and fresh ports for every other placeholder.
    pub fn with_ports(scenario: &str, preset: &[(&str, u16)]) -> Group {
        Self::build(scenario, &std::env::temp_dir(), preset)
    }

    fn build(scenario: &str, base: &Path, preset: &[(&str, u16)]) -> Group {
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(scenario)
            .join("main.yml");
        let text = std::fs::read_to_string(&template_path).expect("scenario main.yml");
        Self::from_text(&text, base, preset)
    }

    /// A group running `text` as its main.yml (placeholders filled as for a scenario).
    pub fn from_text(text: &str, base: &Path, preset: &[(&str, u16)]) -> Group {
        let mut text = text.to_string();
        let dir = base.join(format!(
            "g3proxy-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let control_dir = dir.join("run");
        std::fs::create_dir_all(&control_dir).expect("temp dir");
        let mut ports: HashMap<String, u16> = preset
            .iter()
            .map(|(name, port)| (name.to_string(), *port))
            .collect();
        while let Some(start) = text.find("{{") {
            let end = text[start..].find("}}").expect("closed placeholder") + start;
            let name = text[start + 2..end].to_string();
            let port = *ports
                .entry(name.trim_end_matches("_port").to_string())
                .or_insert_with(|| free_port("127.0.0.1"));
            text.replace_range(start..end + 2, &port.to_string());
        }
        let config = dir.join("main.yml");
        std::fs::write(&config, text).expect("write config");
        Group {
            dir,
            control_dir,
            name: format!("g{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            config,
            ports,
            children: Vec::new(),
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn http_proxy(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port("http")))
    }

    pub fn socks_proxy(&self) -> SocketAddr {
        format!("[::1]:{}", self.port("socks"))
            .parse()
            .expect("socks address")
    }

    /// The arguments of `g3proxy` for this group.
    pub fn supervisor_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            self.config.clone().into(),
            "-G".into(),
            self.name.clone().into(),
        ];
        args.extend(["-C".into(), self.control_dir.clone().into(), "-v".into()]);
        args
    }

    /// The `g3proxy` command for this group, not yet started.
    pub fn supervisor_command(&self) -> Command {
        let mut command = Command::new(bin("g3proxy"));
        command.args(self.supervisor_args()).stdin(Stdio::null());
        self.mark(&mut command);
        command
    }

    /// An environment variable every process of this group inherits, so that cleanup finds
    /// workers whose supervisor is gone.
    fn marker(&self) -> String {
        format!("G3PROXY_E2E_GROUP={}", self.dir.display())
    }

    /// Marks a process this group starts, so that dropping the group kills it and its workers.
    pub fn mark(&self, command: &mut Command) {
        command.env("G3PROXY_E2E_GROUP", &self.dir);
    }

    /// Starts a supervisor (without systemd) and waits until its group answers `fleet` with a
    /// current generation.
    pub fn start(&mut self) -> u32 {
        let child = self.supervisor_command().spawn().expect("spawn g3proxy");
        let pid = child.id();
        self.children.push(child);
        self.wait_serving(pid);
        pid
    }

    /// Starts a supervisor as systemd would (`-s`, `NOTIFY_SOCKET`, stored listeners as
    /// `LISTEN_FDS`) and waits for its `READY=1`, which it returns with the pid.
    pub fn start_with_notify(&mut self, notify: &mut crate::NotifySocket) -> (u32, String) {
        let mut args = self.supervisor_args();
        args.push("-s".into());
        let mut command = notify.command(&bin("g3proxy"), &args);
        self.mark(&mut command);
        let child = command.spawn().expect("spawn g3proxy");
        let pid = child.id();
        self.children.push(child);
        let ready = notify.wait_for("READY=1", Duration::from_secs(30));
        (pid, ready)
    }

    /// A group started on `text` with its worker's standard output kept, line by line.
    pub fn start_with_stdout(text: &str) -> (Group, Arc<Mutex<Vec<String>>>) {
        let mut group = Group::from_text(text, &std::env::temp_dir(), &[]);
        let mut command = group.supervisor_command();
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().expect("g3proxy");
        let stdout = child.stdout.take().expect("stdout");
        let pid = child.id();
        group.adopt_child(child);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        group.wait_serving(pid);
        (group, lines)
    }

    /// Starts another supervisor for the group (a successor) without waiting for it.
    pub fn spawn_supervisor(&mut self) -> u32 {
        let child = self.supervisor_command().spawn().expect("spawn g3proxy");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    pub fn adopt_child(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Waits until supervisor `pid` serves a current generation.
    pub fn wait_serving(&mut self, pid: u32) {
        wait_until(
            Duration::from_secs(30),
            "the supervisor to serve a current generation",
            || {
                self.assert_running(pid);
                let fleet = self.fleet_of(Some(pid))?;
                let serving = fleet["generations"]
                    .as_array()?
                    .iter()
                    .any(|g| g["state"] == "current");
                serving.then_some(())
            },
        );
    }

    /// Fails the test at once if our child `pid` has exited.
    pub fn assert_running(&mut self, pid: u32) {
        if let Some(child) = self.children.iter_mut().find(|c| c.id() == pid)
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("supervisor {pid} exited: {status}");
        }
    }

    /// Waits for our child `pid` to exit and returns whether it succeeded.
    pub fn wait_exit(&mut self, pid: u32, timeout: Duration) -> bool {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a child of this group");
        wait_until(timeout, "the supervisor to exit", || {
            child.try_wait().ok().flatten()
        })
        .success()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_pid(None, args)
    }

    pub fn ctl_pid(&self, pid: Option<u32>, args: &[&str]) -> Output {
        let mut command = Command::new(bin("g3proxy-ctl"));
        command
            .arg("-C")
            .arg(&self.control_dir)
            .arg("-G")
            .arg(&self.name);
        if let Some(pid) = pid {
            command.arg("-p").arg(pid.to_string());
        }
        command.args(args).output().expect("run g3proxy-ctl")
    }

    /// `fleet --json` of the group's current supervisor (or of `pid`), parsed.
    pub fn fleet_of(&self, pid: Option<u32>) -> Option<serde_json::Value> {
        let output = self.ctl_pid(pid, &["--json", "fleet"]);
        if !output.status.success() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(value["fleet"].clone())
    }

    pub fn fleet(&self) -> serde_json::Value {
        self.fleet_of(None).expect("fleet status")
    }

    /// The workers of the first generation `fleet` lists, as JSON rows.
    pub fn first_generation_workers(&self) -> Vec<serde_json::Value> {
        self.fleet()["generations"][0]["workers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Worker pids of generations in `state` (`current`, `draining`, `adopted`).
    pub fn worker_pids(&self, state: &str) -> Vec<u32> {
        let fleet = self.fleet();
        let mut pids = Vec::new();
        for generation in fleet["generations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["state"] == state)
        {
            for worker in generation["workers"].as_array().into_iter().flatten() {
                pids.extend(worker["pid"].as_u64().map(|p| p as u32));
            }
        }
        pids
    }

    /// Waits until every worker of the draining generations reports it stopped accepting:
    /// right after a switch both generations accept for a moment.
    pub fn wait_draining_stopped(&self) {
        wait_until(
            Duration::from_secs(10),
            "the old generation to stop accepting",
            || {
                let fleet = self.fleet();
                let workers: Vec<&serde_json::Value> = fleet["generations"]
                    .as_array()?
                    .iter()
                    .filter(|g| g["state"] == "draining")
                    .flat_map(|g| g["workers"].as_array().into_iter().flatten())
                    .collect();
                workers
                    .iter()
                    .all(|w| w["state"] == "draining")
                    .then_some(())
            },
        );
    }

    pub fn current_generation(&self) -> u64 {
        let fleet = self.fleet();
        fleet["generations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["state"] == "current")
            .and_then(|g| g["generation"].as_u64())
            .expect("a current generation")
    }
}

/// Inodes of the sockets process `pid` holds open.
pub fn socket_inodes(pid: u32) -> std::collections::BTreeSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Default::default();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            target
                .to_string_lossy()
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

pub fn process_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.contains(") Z "))
}

pub fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// Every process carrying `marker` in its environment: supervisors of a group and the
/// workers they spawned, wherever those were reparented.
fn marked_processes(marker: &[u8]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker))
        })
        .collect()
}

impl Drop for Group {
    fn drop(&mut self) {
        // A supervisor may restart a worker while we kill: go round until nothing is left.
        let marker = self.marker();
        for _ in 0..10 {
            let pids = marked_processes(marker.as_bytes());
            if pids.is_empty() {
                break;
            }
            for &pid in &pids {
                kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            for child in &mut self.children {
                let _ = child.wait();
            }
            try_wait_until(Duration::from_secs(5), || {
                pids.iter().all(|&pid| !process_alive(pid)).then_some(())
            });
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
