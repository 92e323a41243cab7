//! Scenario: reloads and upgrades while clients keep sending requests. Nothing is refused or
//! cut; an open tunnel outlives its generation's switch; a broken config or a broken worker
//! binary is refused and the serving generation carries on untouched.

use std::time::Duration;

use g3proxy_tests::group::process_alive;
use g3proxy_tests::{
    Echo, Group, Load, Origin, http_get, open_connect_tunnel, roundtrip, wait_until,
};

fn ctl_ok(group: &Group, args: &[&str]) -> String {
    let output = group.ctl(args);
    assert!(
        output.status.success(),
        "ctl {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ten_reloads_under_load_lose_no_request() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("workers");
    group.start();
    let load = Load::start(
        group.http_proxy(),
        origin.addr,
        6,
        6,
        Duration::from_secs(240),
    );
    load.wait_for_progress(200);
    let first = group.current_generation();
    for round in 1..=10 {
        let notice = ctl_ok(&group, &["reload"]);
        assert!(notice.starts_with("notice: success"), "{notice}");
        assert_eq!(group.current_generation(), first + round);
        load.wait_for_progress(100);
    }
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
    assert!(stats.ok > 1000, "only {} requests answered", stats.ok);
    // Old generations drain away once their clients moved on.
    wait_until(Duration::from_secs(30), "old generations to exit", || {
        group.worker_pids("draining").is_empty().then_some(())
    });
}

#[test]
fn open_tunnel_keeps_flowing_and_holds_its_generation_until_closed() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"before");
    let old_workers = group.worker_pids("current");
    ctl_ok(&group, &["reload"]);
    roundtrip(&mut tunnel, b"after the reload");
    assert_eq!(
        group.worker_pids("draining"),
        old_workers,
        "the old generation drains while its tunnel is open"
    );
    let fleet = group.fleet();
    let draining = fleet["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["state"] == "draining")
        .unwrap()
        .clone();
    assert_eq!(draining["workers"][0]["alive_tasks"], 1, "{draining}");
    assert!(
        draining["drain_deadline_unix_secs"].as_u64().is_some(),
        "{draining}"
    );
    for _ in 0..3 {
        roundtrip(&mut tunnel, b"still here");
    }
    drop(tunnel);
    wait_until(
        Duration::from_secs(30),
        "the old worker to exit after its tunnel closed",
        || {
            old_workers
                .iter()
                .all(|&pid| !process_alive(pid))
                .then_some(())
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the old generation to leave the fleet",
        || group.worker_pids("draining").is_empty().then_some(()),
    );
}

#[test]
fn broken_config_is_refused_with_file_and_line_and_the_old_one_serves() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    let supervisor = group.start();
    let generation = group.current_generation();
    let good = std::fs::read_to_string(&group.config).unwrap();
    let broken = good.replace(
        "    type: direct_fixed\n",
        "    type: direct_fixed\n    resolve_strategy: ipv5\n",
    );
    std::fs::write(&group.config, &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("ipv5")).unwrap() + 1;

    let output = group.ctl(&["reload"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("main.yml: escaper[0].resolve_strategy")
            && error.contains(&format!("(line {line})")),
        "{error}"
    );
    // SIGHUP cannot answer, but it must not disturb anything either.
    g3proxy_tests::group::kill(supervisor, nix::sys::signal::Signal::SIGHUP);
    assert_eq!(
        http_get(group.http_proxy(), origin.addr).unwrap().1,
        b"hello"
    );
    assert_eq!(group.current_generation(), generation);
    assert!(group.worker_pids("draining").is_empty());

    // A reference this build must refuse (an auditor it cannot run) is refused the same way.
    std::fs::write(
        &group.config,
        good.replace(
            "    escaper: default\n    listen: \"[::1]",
            "    escaper: default\n    auditor: missing\n    listen: \"[::1]",
        ),
    )
    .unwrap();
    let error = String::from_utf8_lossy(&group.ctl(&["reload"]).stderr).into_owned();
    assert!(
        error.contains("server[1].auditor") && error.contains("this build cannot audit yet"),
        "{error}"
    );

    std::fs::write(&group.config, good).unwrap();
    ctl_ok(&group, &["reload"]);
    assert_eq!(group.current_generation(), generation + 1);
}

/// A group whose supervisor runs a copy of the worker binary that the test may replace, as a
/// package upgrade replaces `/usr/bin/g3proxy-worker`.
fn start_with_worker_copy(scenario: &str) -> (Group, std::path::PathBuf) {
    let mut group = Group::new(scenario);
    let binary = group.dir.join("g3proxy-worker");
    std::fs::copy(g3proxy_tests::bin("g3proxy-worker"), &binary).unwrap();
    let mut command = group.supervisor_command();
    command.arg("--worker-binary").arg(&binary);
    let child = command.spawn().unwrap();
    let pid = child.id();
    group.adopt_child(child);
    group.wait_serving(pid);
    (group, binary)
}

fn install_worker(binary: &std::path::Path, script: Option<&str>) {
    // A new file, as package managers do, not a rewrite of the running one.
    std::fs::remove_file(binary).unwrap();
    match script {
        Some(script) => {
            std::fs::write(binary, script).unwrap();
            std::fs::set_permissions(binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        None => {
            std::fs::copy(g3proxy_tests::bin("g3proxy-worker"), binary).unwrap();
        }
    }
}

#[test]
fn upgrade_to_a_broken_worker_binary_rolls_back() {
    let origin = Origin::start("127.0.0.1");
    let (group, binary) = start_with_worker_copy("basic");
    let generation = group.current_generation();
    let load = Load::start(
        group.http_proxy(),
        origin.addr,
        2,
        2,
        Duration::from_secs(120),
    );
    load.wait_for_progress(50);

    install_worker(
        &binary,
        Some("#!/bin/sh\necho 'this worker cannot start' >&2\nexit 3\n"),
    );
    let output = group.ctl(&["upgrade"]);
    assert!(!output.status.success());
    // It dies before or after reading its start message; either way the generation is refused.
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("exited while starting") || error.contains("could not be started"),
        "{error}"
    );
    assert_eq!(group.current_generation(), generation);
    load.wait_for_progress(50);

    install_worker(&binary, None);
    ctl_ok(&group, &["upgrade"]);
    assert!(group.current_generation() > generation);
    load.wait_for_progress(50);
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
}

#[test]
fn a_generation_that_never_reports_ready_is_rolled_back() {
    let origin = Origin::start("127.0.0.1");
    let (group, binary) = start_with_worker_copy("limits");
    let generation = group.current_generation();
    install_worker(&binary, Some("#!/bin/sh\nexec sleep 60\n"));
    let output = group.ctl(&["upgrade"]);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("was not ready within 2s"), "{error}");
    assert_eq!(group.current_generation(), generation);
    let fleet = group.fleet();
    assert!(
        fleet["generations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["state"] == "current"),
        "nothing left starting: {fleet}"
    );
    assert_eq!(
        http_get(group.http_proxy(), origin.addr).unwrap().1,
        b"hello"
    );
}

#[test]
fn listeners_follow_the_config_across_reloads() {
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let old_proxy = group.http_proxy();
    let new_port = g3proxy_tests::free_port("127.0.0.1");
    let config = std::fs::read_to_string(&group.config).unwrap();
    std::fs::write(
        &group.config,
        config.replace(
            &format!(":{}\"", old_proxy.port()),
            &format!(":{new_port}\""),
        ),
    )
    .unwrap();
    ctl_ok(&group, &["reload"]);
    let new_proxy = std::net::SocketAddr::from(([127, 0, 0, 1], new_port));
    assert_eq!(http_get(new_proxy, origin.addr).unwrap().1, b"hello");
    // No generation uses the old address any more: it is closed, not left queueing.
    wait_until(Duration::from_secs(30), "the old listener to close", || {
        std::net::TcpStream::connect(old_proxy)
            .is_err()
            .then_some(())
    });
}

#[test]
fn drain_deadline_and_draining_bound_close_old_tunnels() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("limits");
    group.start();
    let mut first = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut first, b"gen 1");
    ctl_ok(&group, &["reload"]);
    // For a moment both generations accept; open the next tunnel once gen 1 stopped.
    group.wait_draining_stopped();
    let mut second = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut second, b"gen 2");
    // A second draining generation is one too many: the oldest is closed at once.
    ctl_ok(&group, &["reload"]);
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut first, &mut byte).unwrap_or(0),
        0,
        "the oldest draining generation's tunnel is closed"
    );
    roundtrip(&mut second, b"gen 2 drains");
    // The drain deadline (3s here) closes what is left.
    second
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        std::io::Read::read(&mut second, &mut byte).unwrap_or(0),
        0,
        "the drain deadline closes the tunnel"
    );
    wait_until(
        Duration::from_secs(10),
        "draining generations to be gone",
        || group.worker_pids("draining").is_empty().then_some(()),
    );
}

#[test]
fn keep_alive_client_gets_connection_close_from_a_draining_worker() {
    use std::io::{Read, Write};
    let origin = Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let mut stream = std::net::TcpStream::connect(group.http_proxy()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
    let exchange = |stream: &mut std::net::TcpStream| {
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"hello") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).unwrap();
            assert!(
                n > 0,
                "closed before the answer: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(exchange(&mut stream).contains("Connection: keep-alive"));
    ctl_ok(&group, &["reload"]);
    group.wait_draining_stopped();
    // The idle connection is not cut: its next request is answered, with `close`.
    let answer = exchange(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("Connection: close"),
        "{answer}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        stream.read_to_end(&mut rest).unwrap(),
        0,
        "the draining worker closes after the answer"
    );
}

#[test]
fn force_quit_closes_what_a_draining_server_carries() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let origin = Origin::start("127.0.0.1");
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"open");
    // A keep-alive client between two requests: it waits on the worker's force-quit, not on
    // its five-minute idle timeout.
    let mut idle = std::net::TcpStream::connect(group.http_proxy()).unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        origin.url("/"),
        origin.addr
    );
    std::io::Write::write_all(&mut idle, request.as_bytes()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"hello") {
        let mut chunk = [0u8; 1024];
        let n = std::io::Read::read(&mut idle, &mut chunk).unwrap();
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    ctl_ok(&group, &["reload"]);
    roundtrip(&mut tunnel, b"draining");
    // Draining leaves it open (its next request would be answered, with `close`).
    idle.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        std::io::Read::read(&mut idle, &mut byte).is_err(),
        "still open"
    );
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let force_quit = std::time::Instant::now();
    assert_eq!(ctl_ok(&group, &["force-quit", "http"]), "notice: success\n");
    // Closed by the force-quit itself: a client that missed it would be closed only when
    // the worker gives up on its tasks, two seconds later, or at its idle timeout.
    let closed = std::io::Read::read(&mut idle, &mut byte);
    assert!(
        matches!(closed, Ok(0))
            || matches!(&closed, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle keep-alive client is closed: {closed:?}"
    );
    assert!(
        force_quit.elapsed() < Duration::from_millis(1500),
        "closed {:?} after the force-quit",
        force_quit.elapsed()
    );
    tunnel
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut tunnel, &mut byte).unwrap_or(0),
        0,
        "the tunnel is closed"
    );
    wait_until(
        Duration::from_secs(10),
        "the draining generation to exit",
        || group.worker_pids("draining").is_empty().then_some(()),
    );
    let output = group.ctl(&["force-quit", "nothing"]);
    assert!(!output.status.success(), "no draining server has that name");
}

#[test]
fn a_worker_that_outlives_its_drain_deadline_is_killed() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("limits");
    group.start();
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"keeps the old generation draining");
    let old_workers = group.worker_pids("current");
    ctl_ok(&group, &["reload"]);
    group.wait_draining_stopped();
    // Frozen, the worker cannot close anything at its deadline (3s); 1s later it is killed.
    for &pid in &old_workers {
        g3proxy_tests::group::kill(pid, nix::sys::signal::Signal::SIGSTOP);
    }
    wait_until(
        Duration::from_secs(20),
        "the frozen worker to be killed",
        || {
            old_workers
                .iter()
                .all(|&pid| !process_alive(pid))
                .then_some(())
        },
    );
    wait_until(Duration::from_secs(10), "the generation to be gone", || {
        group.worker_pids("draining").is_empty().then_some(())
    });
}

#[test]
fn a_crashed_worker_restarts_from_its_generations_binary_not_the_one_on_disk() {
    let (mut group, binary) = start_with_worker_copy("basic");
    let generation = group.current_generation();
    let old_pid = group.worker_pids("current")[0];
    // A package upgrade puts a worker on disk that would never start.
    install_worker(
        &binary,
        Some("#!/bin/sh\necho 'the new package worker' >&2\nexit 3\n"),
    );
    g3proxy_tests::group::kill(old_pid, nix::sys::signal::Signal::SIGKILL);
    let replacement = g3proxy_tests::wait_until(
        Duration::from_secs(30),
        "the crashed worker to be replaced",
        || {
            group
                .worker_pids("current")
                .into_iter()
                .find(|pid| *pid != old_pid)
        },
    );
    group.assert_running(replacement);
    assert_eq!(group.current_generation(), generation);
    let exe = std::fs::read_link(format!("/proc/{replacement}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with("(deleted)"),
        "runs the pinned, since replaced file: {}",
        exe.display()
    );
}
