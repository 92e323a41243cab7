//! Scenario: the operator surface. `g3proxy -t`, and `g3proxy-ctl` with g3proxy's output
//! forms (runbooks parse them) and `--json` on every command.

use std::process::Command;

use g3proxy_tests::{Group, bin};

fn text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn config_check_names_file_and_line() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
    let output = Command::new(bin("g3proxy"))
        .arg("-t")
        .arg("-c")
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(text(&output), "the format of the config file is ok\n");

    let group = Group::new("basic");
    let check = |config: &str| {
        std::fs::write(&group.config, config).unwrap();
        Command::new(bin("g3proxy"))
            .arg("-t")
            .arg("-c")
            .arg(&group.config)
            .output()
            .unwrap()
    };
    let output =
        check("server:\n  - name: a\n    type: http_proxy\n    escaper: e\n    listen: 70000\n");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "main.yml: server[0].listen (line 5): invalid port 70000\n"
    );
    // A reference to a module that does not exist loads, as in g3proxy, with a warning.
    let output = check("server:\n  - name: a\n    type: http_proxy\n    escaper: nowhere\n");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "warning: main.yml: server[0].escaper (line 4): escaper \"nowhere\" does not exist: every task of this server is denied\n"
    );
}

/// `g3proxy -c FILE -g [FORMAT]`: every module and reference, for graphviz (the default),
/// mermaid and plantuml.
#[test]
fn dependency_graph_in_three_formats() {
    let group = Group::new("basic");
    std::fs::write(
        &group.config,
        "resolver:\n  - {name: dns, type: c-ares}\n  - {name: both, type: fail_over, primary: dns, standby: dns}\nescaper:\n  - {name: out, type: direct_fixed, resolver: both}\n  - {name: pick-one, type: route_select, next_nodes: [out]}\nuser_group:\n  - {name: staff}\nserver:\n  - {name: http, type: http_proxy, escaper: pick-one, user_group: staff}\n  - {name: port, type: plain_tcp_port, server: http, listen: 1}\n",
    )
    .unwrap();
    let graph = |format: Option<&str>| {
        let mut command = Command::new(bin("g3proxy"));
        command.arg("-c").arg(&group.config).arg("-g");
        command.args(format);
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text(&output)
    };
    let graphviz = graph(None);
    assert!(graphviz.starts_with("digraph g3proxy {"), "{graphviz}");
    for edge in [
        "server_http -> escaper_pick_2d_one;",
        "server_http -> user_group_staff;",
        "server_port -> server_http;",
        "escaper_pick_2d_one -> escaper_out;",
        "escaper_out -> resolver_both;",
        "resolver_both -> resolver_dns;",
    ] {
        assert!(graphviz.contains(edge), "{edge} in {graphviz}");
    }
    let mermaid = graph(Some("mermaid"));
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    assert!(
        mermaid.contains("escaper_pick_2d_one[\"pick-one\"]"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("server_http --> escaper_pick_2d_one"),
        "{mermaid}"
    );
    let plantuml = graph(Some("plantuml"));
    assert!(plantuml.starts_with("@startuml") && plantuml.ends_with("@enduml\n"));
    assert!(
        plantuml.contains("resolver_both --> resolver_dns"),
        "{plantuml}"
    );
}

#[test]
fn a_broken_config_at_start_exits_255_with_the_reason() {
    let group = Group::new("basic");
    std::fs::write(
        &group.config,
        "server:\n  - {name: a, type: http_proxy, escaper: x, listen: 70000}\n",
    )
    .unwrap();
    let output = group.supervisor_command().output().unwrap();
    // 255 is the unit's RestartPreventExitStatus: systemd does not retry it in a loop.
    assert_eq!(output.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("main.yml: server[0].listen (line 2)")
    );
}

#[test]
fn runbook_forms_and_json() {
    let mut group = Group::new("basic");
    let pid = group.start();
    assert_eq!(
        text(&group.ctl(&["version"])),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        text(&group.ctl_pid(Some(pid), &["version"])),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(text(&group.ctl(&["list", "server"])), "http\nsocks\n");
    assert_eq!(text(&group.ctl(&["list", "Escaper"])), "default\n");
    assert_eq!(text(&group.ctl(&["list", "resolver"])), "default\n");
    assert_eq!(text(&group.ctl(&["list", "user-group"])), "staff\n");
    let status = text(&group.ctl(&["server", "socks", "status"]));
    assert_eq!(
        status
            .lines()
            .map(|l| l.split(':').next().unwrap())
            .collect::<Vec<_>>(),
        ["online", "alive tasks", "total conn", "total task"]
    );
    assert_eq!(text(&group.ctl(&["force-quit-all"])), "notice: success\n");

    let missing = group.ctl(&["server", "nope", "status"]);
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "api error (code: -1, reason: \"no server named nope\")\n"
    );

    for args in [
        &["--json", "version"][..],
        &["--json", "list", "server"],
        &["--json", "server", "http", "status"],
        &["--json", "fleet"],
        &["list", "generations", "--json"],
    ] {
        let output = group.ctl(args);
        assert!(output.status.success(), "{args:?}");
        let value: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(value.is_object(), "{args:?}: {value}");
    }
    let fleet = group.fleet();
    assert_eq!(fleet["supervisor_pid"], pid);
    assert_eq!(fleet["generations"][0]["state"], "current");
    assert!(
        fleet["generations"][0]["workers"][0]["pid"]
            .as_u64()
            .unwrap()
            > 0
    );

    // g3proxy's per-entry reloads: a new generation serves the config read again; a name the
    // config lacks is refused and the serving generation stays.
    let before = group.current_generation();
    assert_eq!(
        text(&group.ctl(&["reload-server", "socks"])),
        format!("notice: success: generation {} is serving\n", before + 1)
    );
    assert_eq!(group.current_generation(), before + 1);
    let missing = group.ctl(&["reload-escaper", "nope"]);
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "api error (code: -1, reason: \"no escaper named nope in the config\")\n"
    );
    assert_eq!(group.current_generation(), before + 1);

    // Control sockets are for root only.
    for entry in std::fs::read_dir(&group.control_dir).unwrap() {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &entry.unwrap().metadata().unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn cancel_shutdown_keeps_an_offline_supervisor_serving() {
    let mut group = Group::new("limits");
    let pid = group.start();
    assert_eq!(text(&group.ctl(&["offline"])), "notice: success\n");
    assert_eq!(group.fleet()["state"], "offline, waiting for a successor");
    assert_eq!(text(&group.ctl(&["cancel-shutdown"])), "notice: success\n");
    assert_eq!(group.fleet()["state"], "serving");
    assert!(
        !group.ctl(&["cancel-shutdown"]).status.success(),
        "nothing left to cancel"
    );
    // Without a cancel, no successor within server_offline_delay (1s) means a plain stop.
    assert_eq!(text(&group.ctl(&["offline"])), "notice: success\n");
    assert!(
        group.wait_exit(pid, std::time::Duration::from_secs(30)),
        "the supervisor stops cleanly"
    );
}

/// `g3proxy -V`, and with `-v` the features and TLS provider, in g3proxy's lines.
#[test]
fn version_with_features() {
    let version = |args: &[&str]| {
        let output = std::process::Command::new(g3proxy_tests::bin("g3proxy"))
            .args(args)
            .output()
            .expect("g3proxy -V");
        assert!(output.status.success(), "{args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(
        version(&["-V"]),
        format!("g3proxy {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        version(&["-V", "-v"]),
        format!(
            "g3proxy {}\nFeatures: c-ares\nRustls Provider: ring\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// `--completion SHELL` on both binaries prints a completion script and needs nothing else.
#[test]
fn shell_completions() {
    for (binary, marker) in [
        ("g3proxy", "_g3proxy()"),
        ("g3proxy-ctl", "_g3proxy__ctl()"),
    ] {
        let output = std::process::Command::new(g3proxy_tests::bin(binary))
            .args(["--completion", "bash"])
            .output()
            .expect("completion");
        assert!(output.status.success(), "{binary}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{binary}: {script}");
        assert!(script.contains("--control-dir"), "{binary}");
    }
}

/// A drain an operator can watch: `fleet` ends with what is left of it, and `fleet -w` shows
/// it again and again until stopped.
#[test]
fn fleet_shows_the_drain_and_watches_it() {
    let echo = g3proxy_tests::Echo::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let mut tunnel = g3proxy_tests::open_connect_tunnel(group.http_proxy(), echo.addr);
    g3proxy_tests::roundtrip(&mut tunnel, b"held");
    // The CONNECT counts as one, under its kind, on the worker that carries it.
    let kinds: Vec<serde_json::Value> = group
        .first_generation_workers()
        .iter()
        .map(|w| w["tasks_by_kind"].clone())
        .collect();
    assert!(
        kinds.contains(&serde_json::json!({"connect": 1})),
        "{kinds:?}"
    );
    assert!(group.ctl(&["reload"]).status.success());
    let fleet = text(&group.ctl(&["fleet"]));
    let progress = fleet.lines().last().unwrap_or_default();
    assert!(
        progress.starts_with("draining: 1 task left (connect 1) in 1 generation, the oldest ")
            && progress.contains(" at the latest"),
        "{fleet}"
    );
    let frames = group.dir.join("fleet-watch.txt");
    let mut watching = std::process::Command::new(g3proxy_tests::bin("g3proxy-ctl"))
        .arg("-C")
        .arg(&group.control_dir)
        .args(["-G", &group.name, "fleet", "-w", "--interval", "0.2"])
        .stdout(std::fs::File::create(&frames).unwrap())
        .spawn()
        .expect("g3proxy-ctl fleet -w");
    g3proxy_tests::wait_until(
        std::time::Duration::from_secs(10),
        "three views of the fleet",
        || {
            let seen = std::fs::read_to_string(&frames).unwrap_or_default();
            (seen.matches("draining: 1 task left (connect 1)").count() >= 3).then_some(())
        },
    );
    let _ = watching.kill();
    let _ = watching.wait();
    drop(tunnel);
}

/// `g3proxy -d -p FILE`, as g3proxy's init scripts run it: the command returns once the
/// daemon is on its own, the pid file names the daemon, which serves; a second daemon of the
/// same pid file is refused on the terminal; a broken config is said on the terminal too;
/// SIGTERM stops the daemon. `--manpage` renders the options for the packages.
#[test]
fn daemon_mode_with_a_pid_file() {
    let origin = g3proxy_tests::Origin::start("127.0.0.1");
    let mut group = Group::new("basic");
    let pid_file = group.dir.join("g3proxy.pid");
    let daemon = |group: &Group| {
        let mut command = group.supervisor_command();
        command.arg("-d").arg("-p").arg(&pid_file);
        command.output().expect("g3proxy -d")
    };
    let output = daemon(&group);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    group.wait_serving(pid);
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    assert_eq!(
        g3proxy_tests::curl(&["-x", &proxy, &origin.url("/")]),
        "hello"
    );

    let second = daemon(&group);
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("is locked"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let without_pid_file = group.supervisor_command().arg("-d").output().unwrap();
    assert!(!without_pid_file.status.success());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    g3proxy_tests::wait_until(
        std::time::Duration::from_secs(20),
        "the daemon to stop",
        || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
    );

    // A config that does not load: said here, and no daemon starts.
    std::fs::write(&group.config, "server: [{name: a, type: nope}]\n").unwrap();
    let broken = daemon(&group);
    assert_eq!(broken.status.code(), Some(255));
    assert!(!String::from_utf8_lossy(&broken.stderr).is_empty());

    for binary in ["g3proxy", "g3proxy-ctl"] {
        let page = Command::new(bin(binary)).arg("--manpage").output().unwrap();
        let page = text(&page);
        assert!(page.contains(&format!(".TH {binary} 1")), "{page}");
        assert!(page.contains("\\-\\-completion"), "{binary}");
    }
}
