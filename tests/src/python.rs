//! A peer the tests write in Python (with PyPI's `msgpack` or `aioquic`, which
//! `ci/setup.sh` installs): a program that prints the port it listens on first, then a line
//! for each thing it wants the test to see. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct PythonPeer {
    child: Child,
    pub port: u16,
    /// Every line printed after the port, as it comes.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl PythonPeer {
    /// Runs `script` with `args`, and waits for its port.
    pub fn start(script: &str, args: &[&str]) -> PythonPeer {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (ci/setup.sh installs it and msgpack)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.trim().parse().ok())
            .expect("the peer's port (is python3's msgpack installed?)");
        let printed = Arc::new(Mutex::new(Vec::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        PythonPeer {
            child,
            port,
            lines: printed,
        }
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
