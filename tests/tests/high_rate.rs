//! Scenario: the zero-loss claims at a high new-connection rate. wrk opens a new connection
//! for every request (`Connection: close`), thousands per second, while the group reloads
//! again and again, or its supervisor is replaced on each path. A lost connection would show
//! as a wrk socket error or a non-2xx answer; there must be none.

use std::time::{Duration, Instant};

use g3proxy_tests::group::kill;
use g3proxy_tests::{Group, NotifySocket, Origin, Wrk, WrkResult, wait_until};
use nix::sys::signal::Signal;

const RUN: Duration = Duration::from_secs(8);
const CONNECTIONS: usize = 48;

fn start_wrk(group: &Group, origin: &Origin) -> Wrk {
    let wrk = Wrk::start(
        group.http_proxy(),
        origin.addr,
        CONNECTIONS,
        RUN,
        &group.dir,
    );
    origin.wait_for_progress(5_000);
    wrk
}

fn check(result: &WrkResult, what: &str) {
    eprintln!(
        "{what}: {} requests, {:.0}/s",
        result.requests, result.per_second
    );
    assert!(
        result.requests > 5_000,
        "{what}: too few requests to mean anything:\n{}",
        result.output
    );
    assert_eq!(
        (result.socket_errors, result.bad_status),
        (0, 0),
        "{what}: connections lost:\n{}",
        result.output
    );
}

#[test]
fn reloads_at_a_high_connection_rate_lose_nothing() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("workers");
    group.start();
    let started = Instant::now();
    let wrk = start_wrk(&group, &origin);
    let mut reloads = 0;
    // Reload back to back while wrk runs, leaving its last second undisturbed.
    while started.elapsed() < RUN - Duration::from_secs(2) && reloads < 50 {
        let output = group.ctl(&["reload"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        reloads += 1;
        origin.wait_for_progress(200);
    }
    assert!(reloads >= 10, "only {reloads} reloads fit in the run");
    check(&wrk.finish(), &format!("{reloads} reloads"));
}

/// Outside systemd: the old supervisor goes `offline` (or is killed), a new one takes over.
fn replace_outside_systemd(kill_it: bool) {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("workers");
    let old = group.start();
    let wrk = start_wrk(&group, &origin);
    if kill_it {
        kill(old, Signal::SIGKILL);
        group.wait_exit(old, Duration::from_secs(30));
    } else {
        assert!(group.ctl_pid(Some(old), &["offline"]).status.success());
    }
    let new = group.spawn_supervisor();
    wait_until(Duration::from_secs(30), "the successor to serve", || {
        (group.fleet_of(None)?["supervisor_pid"] == new).then_some(())
    });
    origin.wait_for_progress(2_000);
    check(
        &wrk.finish(),
        if kill_it {
            "kill -9 outside systemd"
        } else {
            "offline handoff"
        },
    );
    if !kill_it {
        assert!(group.wait_exit(old, Duration::from_secs(30)));
    }
}

/// Under systemd: the stop half (`offline`, or the main process killed), then the start half
/// with the fd store's listeners.
fn replace_under_systemd(kill_it: bool) {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("workers");
    let mut notify = NotifySocket::new(&group.dir);
    let (old, _) = group.start_with_notify(&mut notify);
    let wrk = start_wrk(&group, &origin);
    if kill_it {
        kill(old, Signal::SIGKILL);
    } else {
        assert!(group.ctl_pid(Some(old), &["offline"]).status.success());
    }
    group.wait_exit(old, Duration::from_secs(30));
    notify.drain_pending();
    group.start_with_notify(&mut notify);
    origin.wait_for_progress(2_000);
    check(
        &wrk.finish(),
        if kill_it {
            "kill -9 under systemd"
        } else {
            "systemd restart"
        },
    );
}

#[test]
fn offline_handoff_at_a_high_connection_rate_loses_nothing() {
    replace_outside_systemd(false);
}

#[test]
fn supervisor_kill_9_outside_systemd_at_a_high_connection_rate_loses_nothing() {
    replace_outside_systemd(true);
}

#[test]
fn systemd_restart_at_a_high_connection_rate_loses_nothing() {
    replace_under_systemd(false);
}

#[test]
fn supervisor_kill_9_under_systemd_at_a_high_connection_rate_loses_nothing() {
    replace_under_systemd(true);
}
