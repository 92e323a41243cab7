//! Scenario: the shipped unit `systemd/g3proxy@.service` under a real systemd (booted in its
//! own PID and mount namespaces). `systemctl start` waits for READY=1; `systemctl restart`,
//! the hot upgrade, loses no request at a high connection rate and keeps an open tunnel;
//! `systemctl reload` of a broken config fails and changes nothing; `systemctl stop` stops.
//!
//! The unit's paths are changed (binaries from the build, the config from the test), and
//! `DefaultDependencies=no` keeps the machine's boot-time units out of the test systemd.

use g3proxy_tests::systemd::UnitRun;
use g3proxy_tests::{Echo, Group, Origin, bin};

#[test]
fn the_unit_under_a_real_systemd() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    // The test systemd has its own /tmp: the group lives in the target dir, which the test
    // systemd sees even when the checkout is under /tmp (RealSystemd::boot binds it back).
    let group = Group::new_in("workers", std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/g3proxy@.service"
    ))
    .unwrap();
    let bin_path = bin("g3proxy");
    let run = UnitRun::boot(&group, &unit, bin_path.parent().unwrap());

    run.systemctl("start");
    assert_eq!(run.property("ActiveState"), "active");
    let listed = g3proxy_tests::systemd::check(run.ctl(&["list", "server"]), "ctl list");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("http"));

    run.restart_under_load(&origin, &echo);

    // A refused config fails `systemctl reload` and leaves the service as it was.
    let good = std::fs::read_to_string(&group.config).unwrap();
    std::fs::write(
        &group.config,
        good.replace("type: direct_fixed", "type: direct_fixd"),
    )
    .unwrap();
    let reload = run.systemd.systemctl(&["reload", &run.service]);
    assert!(
        !reload.status.success(),
        "a broken config must fail systemctl reload"
    );
    assert_eq!(run.property("ActiveState"), "active");
    assert_eq!(
        g3proxy_tests::http_get(group.http_proxy(), origin.addr)
            .unwrap()
            .1,
        b"hello"
    );
    std::fs::write(&group.config, good).unwrap();
    run.systemctl("reload");

    run.stop();
}
