//! Scenario: the supervisor itself is replaced while clients send requests and tunnels are
//! open, on every path: `offline` then a new `g3proxy` (outside systemd), systemd's restart
//! sequence (stop half, then start half with `LISTEN_FDS` from the fd store), and `kill -9`
//! of the supervisor, with and without systemd. No request fails and every tunnel keeps
//! flowing until it is closed; the old workers exit only after that.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

use g3proxy_tests::group::{kill, process_alive, socket_inodes};
use g3proxy_tests::{
    Echo, Group, Load, NotifySocket, Origin, open_connect_tunnel, open_socks5_tunnel, roundtrip,
    wait_until,
};
use nix::sys::signal::Signal;

struct Traffic {
    load: Load,
    tunnels: Vec<TcpStream>,
    _origin: Origin,
    _echo: Echo,
}

fn start_traffic(group: &Group) -> Traffic {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    let load = Load::start(
        group.http_proxy(),
        origin.addr,
        4,
        4,
        Duration::from_secs(240),
    );
    load.wait_for_progress(200);
    let mut tunnels = vec![
        open_connect_tunnel(group.http_proxy(), echo.addr),
        open_socks5_tunnel(group.socks_proxy(), echo.addr),
    ];
    for tunnel in &mut tunnels {
        roundtrip(tunnel, b"opened");
    }
    Traffic {
        load,
        tunnels,
        _origin: origin,
        _echo: echo,
    }
}

/// Checks the tunnels still flow, closes them, waits for the old workers to exit, and
/// checks that no request failed.
fn finish_traffic(mut traffic: Traffic, old_workers: &[u32]) {
    traffic.load.wait_for_progress(200);
    for tunnel in &mut traffic.tunnels {
        roundtrip(tunnel, b"still flowing after the switch");
    }
    // Idle old workers may be gone already; the ones carrying the tunnels are not.
    assert!(
        old_workers.iter().any(|&pid| process_alive(pid)),
        "every old worker left while tunnels were open"
    );
    traffic.tunnels.clear();
    wait_until(
        Duration::from_secs(30),
        "the old workers to exit once their tunnels closed",
        || {
            old_workers
                .iter()
                .all(|&pid| !process_alive(pid))
                .then_some(())
        },
    );
    let stats = traffic.load.stop();
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
    assert!(stats.ok > 400, "only {} requests answered", stats.ok);
}

/// Sockets held by all of `pids`.
fn sockets_of(pids: &[u32]) -> BTreeSet<u64> {
    pids.iter().flat_map(|&pid| socket_inodes(pid)).collect()
}

/// Every new worker accepts on listeners the old workers held: handed over, not bound anew
/// (a new socket beside the old one would strand the old one's queue when it closes).
fn assert_listeners_handed_over(group: &Group, old_sockets: &BTreeSet<u64>) {
    for pid in group.worker_pids("current") {
        let shared = socket_inodes(pid).intersection(old_sockets).count();
        assert!(
            shared >= 2,
            "worker {pid} shares {shared} sockets with the old workers, not both listeners"
        );
    }
}

#[test]
fn offline_then_new_supervisor_outside_systemd() {
    let mut group = Group::new("basic");
    let old = group.start();
    let old_workers = group.worker_pids("current");
    let old_generation = group.current_generation();
    let old_sockets = sockets_of(&old_workers);
    let traffic = start_traffic(&group);

    let output = group.ctl_pid(Some(old), &["offline"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "notice: success\n");
    traffic.load.wait_for_progress(100);
    let child = group.supervisor_command().spawn().unwrap();
    let new = child.id();
    group.adopt_child(child);
    wait_until(
        Duration::from_secs(30),
        "the new supervisor to own the group socket",
        || {
            let fleet = group.fleet_of(None)?;
            (fleet["supervisor_pid"] == new
                && fleet["generations"]
                    .as_array()?
                    .iter()
                    .any(|g| g["state"] == "current"))
            .then_some(())
        },
    );
    assert_listeners_handed_over(&group, &old_sockets);
    assert_eq!(
        group.current_generation(),
        old_generation + 1,
        "generation numbers go on"
    );
    finish_traffic(traffic, &old_workers);
    assert!(
        group.wait_exit(old, Duration::from_secs(30)),
        "the old supervisor exits cleanly"
    );
    // The old supervisor's unique socket is gone; the group socket is the new one's.
    assert!(
        !group
            .control_dir
            .join(format!("{}_{old}.sock", group.name))
            .exists()
    );
    assert_eq!(group.fleet()["supervisor_pid"], new);
}

#[derive(Clone, Copy)]
enum Stop {
    /// The unit's ExecStop: `g3proxy-ctl -p $MAINPID offline`.
    Offline,
    /// The main process dies; systemd restarts it (Restart=on-failure).
    Kill9,
}

fn systemd_restart(stop: Stop) {
    let mut group = Group::new("basic");
    let mut notify = NotifySocket::new(&group.dir);
    let (old, ready) = group.start_with_notify(&mut notify);
    assert!(ready.contains(&format!("MAINPID={old}")), "{ready}");
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=serving gen 1")),
        "{ready}"
    );
    assert_eq!(notify.stored.len(), 2, "both listeners are in the fd store");
    let old_workers = group.worker_pids("current");
    let traffic = start_traffic(&group);

    match stop {
        Stop::Offline => {
            let output = group.ctl_pid(Some(old), &["offline"]);
            assert!(output.status.success());
        }
        Stop::Kill9 => kill(old, Signal::SIGKILL),
    }
    // systemd waits for the main process to exit before the start half begins.
    group.wait_exit(old, Duration::from_secs(30));
    traffic.load.wait_for_progress(100);
    notify.drain_pending();
    let (new, ready) = group.start_with_notify(&mut notify);
    assert!(ready.contains(&format!("MAINPID={new}")), "{ready}");
    let fleet = group.fleet();
    assert_eq!(fleet["supervisor_pid"], new);
    // The new workers accept on the very sockets systemd kept, not on new ones.
    let stored: BTreeSet<u64> = notify
        .stored
        .iter()
        .map(|(_, fd)| nix::sys::stat::fstat(fd).unwrap().st_ino)
        .collect();
    for pid in group.worker_pids("current") {
        assert!(
            stored.is_subset(&socket_inodes(pid)),
            "worker {pid} does not hold the stored listeners"
        );
    }
    let adopted: Vec<u64> = fleet["generations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["state"] == "adopted")
        .flat_map(|g| {
            g["workers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["pid"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        adopted,
        old_workers.iter().map(|&p| p as u64).collect::<Vec<_>>(),
        "the new supervisor shows the old workers"
    );
    finish_traffic(traffic, &old_workers);
}

#[test]
fn systemd_restart_sequence_with_the_fd_store() {
    systemd_restart(Stop::Offline);
}

#[test]
fn systemd_restart_after_kill_9() {
    systemd_restart(Stop::Kill9);
}

#[test]
fn kill_9_of_the_supervisor_then_a_new_one_outside_systemd() {
    let mut group = Group::new("workers");
    let old = group.start();
    let old_workers = group.worker_pids("current");
    let old_sockets = sockets_of(&old_workers);
    let traffic = start_traffic(&group);
    kill(old, Signal::SIGKILL);
    group.wait_exit(old, Duration::from_secs(30));
    traffic.load.wait_for_progress(100);
    let child = group.supervisor_command().spawn().unwrap();
    let new = child.id();
    group.adopt_child(child);
    group.wait_serving(new);
    assert_eq!(group.fleet()["supervisor_pid"], new);
    assert_listeners_handed_over(&group, &old_sockets);
    finish_traffic(traffic, &old_workers);
}
