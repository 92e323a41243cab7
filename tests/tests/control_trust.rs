//! Scenario: another local user tries the control plane. A socket planted where the supervisor
//! looks for its predecessor gets no listeners, a control directory someone else owns or may
//! write is refused with the fix, and a worker's control socket hangs up on a foreign peer
//! (reached here only because the test opens the socket's mode; normally 0600 keeps it out).

use std::os::unix::fs::{PermissionsExt, chown};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use g3proxy_proto::frame;
use g3proxy_tests::{Group, wait_until};

/// The uid the foreign peer runs as (`nobody` on Debian; it need not exist).
const FOREIGN_UID: u32 = 65534;

/// Binds `path` as root, drops to `uid`, then listens (the kernel records the listener's
/// credentials at `listen`), and waits for one connection.
const PLANT_SOCKET: &str = r#"
import os, socket, sys
path, uid = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.setgid(uid); os.setuid(uid)
s.listen(4)
print("listening", flush=True)
s.settimeout(30)
conn, _ = s.accept()
conn.settimeout(10)
try:
    conn.recv(65536)
except OSError:
    pass
"#;

/// Connects to `path` as `uid`, sends one framed request, prints what came back.
const ASK_SOCKET: &str = r#"
import os, socket, sys
path, uid, frame = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
if uid != 0:
    os.setgid(uid); os.setuid(uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(path)
try:
    s.sendall(frame)
    answer = s.recv(65536)
except (BrokenPipeError, ConnectionResetError):
    answer = b""
print("answer" if answer else "closed", flush=True)
"#;

fn python(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).args(args);
    command
}

fn supervisor_output(group: &Group) -> Output {
    group
        .supervisor_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run g3proxy")
}

#[test]
fn a_planted_group_socket_gets_no_listeners() {
    let group = Group::new("basic");
    let planted = group.control_dir.join(format!("{}.sock", group.name));
    let mut planter = python(
        PLANT_SOCKET,
        &[planted.to_str().unwrap(), &FOREIGN_UID.to_string()],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(planter.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");

    let output = supervisor_output(&group);
    let _ = planter.kill();
    let _ = planter.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {stderr}");
    assert!(
        stderr.contains(&format!("refused control peer uid {FOREIGN_UID}"))
            && stderr.contains("not taking listeners"),
        "{stderr}"
    );
    assert!(!stderr.contains("taking over"), "{stderr}");
}

#[test]
fn an_unsafe_control_directory_is_refused_with_the_fix() {
    let group = Group::new("basic");
    chown(&group.control_dir, Some(FOREIGN_UID), None).unwrap();
    let output = supervisor_output(&group);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("is owned by uid {FOREIGN_UID}")),
        "{stderr}"
    );

    chown(&group.control_dir, Some(0), None).unwrap();
    std::fs::set_permissions(&group.control_dir, PermissionsExt::from_mode(0o777)).unwrap();
    let output = supervisor_output(&group);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("mode 0777") && stderr.contains("chmod 0700"),
        "{stderr}"
    );
}

#[test]
fn a_missing_control_directory_is_made_private() {
    let mut group = Group::new("basic");
    std::fs::remove_dir(&group.control_dir).unwrap();
    group.start();
    let mode = std::fs::metadata(&group.control_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn worker_control_sockets_hang_up_on_foreign_peers() {
    let mut group = Group::new("basic");
    group.start();
    let pid = group.worker_pids("current")[0];
    let socket = group
        .control_dir
        .join(format!("{}_worker_{pid}.sock", group.name));
    // Open the way in, so that only the peer check stands between the foreign user and the
    // worker.
    for path in [&group.dir, &group.control_dir, &socket] {
        std::fs::set_permissions(path, PermissionsExt::from_mode(0o777)).unwrap();
    }
    let mut request = Vec::new();
    frame::encode(
        br#"{"version":1,"message":{"status":{"id":7}}}"#,
        &mut request,
    )
    .unwrap();
    let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
    let ask = |uid: u32| {
        let output = python(
            ASK_SOCKET,
            &[socket.to_str().unwrap(), &uid.to_string(), &hex],
        )
        .output()
        .expect("python3");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
            + &String::from_utf8_lossy(&output.stderr)
    };
    assert_eq!(ask(0), "answer");
    assert_eq!(ask(FOREIGN_UID), "closed");
    // The worker still serves its own.
    wait_until(Duration::from_secs(5), "the worker to answer root", || {
        (ask(0) == "answer").then_some(())
    });
}
