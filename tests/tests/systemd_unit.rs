//! Scenario: the shipped unit `systemd/g3proxy@.service` under a real systemd (booted in its
//! own PID and mount namespaces). `systemctl start` waits for READY=1; `systemctl restart`,
//! the hot upgrade, loses no request at a high connection rate and keeps an open tunnel;
//! `systemctl reload` of a broken config fails and changes nothing; `systemctl stop` stops.
//!
//! The unit's paths are changed (binaries from the build, the config from the test), and
//! `DefaultDependencies=no` keeps the machine's boot-time units out of the test systemd.

use std::time::Duration;

use g3proxy_tests::{
    Echo, Group, Origin, RealSystemd, Wrk, bin, open_connect_tunnel, roundtrip, wait_until,
};

#[test]
fn the_unit_under_a_real_systemd() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    // The test systemd has its own /tmp: the group lives in the target dir, which the test
    // systemd sees even when the checkout is under /tmp (RealSystemd::boot binds it back).
    let group = Group::new_in("workers", std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let units = group.dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/g3proxy@.service"
    ))
    .unwrap();
    let bin_dir = bin("g3proxy").parent().unwrap().display().to_string();
    let unit = unit
        .replace("/usr/bin/", &format!("{bin_dir}/"))
        .replace("/etc/g3proxy/%i/", &format!("{}/", group.dir.display()))
        .replace("[Unit]\n", "[Unit]\nDefaultDependencies=no\n");
    std::fs::write(units.join("g3proxy@.service"), unit).unwrap();
    let bin_path = bin("g3proxy");
    let keep = [bin_path.parent().unwrap(), group.dir.as_path()];
    let Some(systemd) = RealSystemd::boot(&units, &keep) else {
        panic!(
            "systemd cannot boot in a namespace on this machine (needs root, unshare and /lib/systemd/systemd)"
        );
    };
    let service = format!("g3proxy@{}.service", group.name);
    let ctl = |args: &[&str]| {
        let mut command = vec![
            bin("g3proxy-ctl").display().to_string(),
            "-G".into(),
            group.name.clone(),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        systemd.run(&command)
    };
    let check = |output: std::process::Output, what: &str| {
        assert!(
            output.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };

    check(systemd.systemctl(&["start", &service]), "systemctl start");
    assert_eq!(systemd.property(&service, "ActiveState"), "active");
    let first_main = systemd.property(&service, "MainPID");
    assert!(
        String::from_utf8_lossy(&check(ctl(&["list", "server"]), "ctl list").stdout)
            .contains("http")
    );

    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"before restart");
    let wrk = Wrk::start(
        group.http_proxy(),
        origin.addr,
        32,
        Duration::from_secs(8),
        &group.dir,
    );
    origin.wait_for_progress(3_000);
    check(
        systemd.systemctl(&["restart", &service]),
        "systemctl restart",
    );
    let second_main = systemd.property(&service, "MainPID");
    assert_ne!(first_main, second_main, "a new supervisor runs");
    origin.wait_for_progress(3_000);
    roundtrip(&mut tunnel, b"after restart");
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
    let fleet: serde_json::Value =
        serde_json::from_slice(&check(ctl(&["--json", "fleet"]), "fleet").stdout).unwrap();
    assert!(
        fleet["fleet"]["generations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["state"] == "adopted"),
        "the old workers drain: {fleet}"
    );
    drop(tunnel);

    // A refused config fails `systemctl reload` and leaves the service as it was.
    let good = std::fs::read_to_string(&group.config).unwrap();
    std::fs::write(
        &group.config,
        good.replace("type: direct_fixed", "type: direct_fixd"),
    )
    .unwrap();
    let reload = systemd.systemctl(&["reload", &service]);
    assert!(
        !reload.status.success(),
        "a broken config must fail systemctl reload"
    );
    assert_eq!(systemd.property(&service, "ActiveState"), "active");
    assert_eq!(
        g3proxy_tests::http_get(group.http_proxy(), origin.addr)
            .unwrap()
            .1,
        b"hello"
    );
    std::fs::write(&group.config, good).unwrap();
    check(systemd.systemctl(&["reload", &service]), "systemctl reload");

    check(systemd.systemctl(&["stop", &service]), "systemctl stop");
    assert_eq!(systemd.property(&service, "ActiveState"), "inactive");
    wait_until(
        Duration::from_secs(30),
        "the listeners to close after stop",
        || {
            std::net::TcpStream::connect(group.http_proxy())
                .is_err()
                .then_some(())
        },
    );
}
