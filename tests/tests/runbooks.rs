//! `docs/runbooks.md`, run: every `$ctl` line of its shell blocks, in order, against a live
//! group holding a CONNECT tunnel (so there is a drain to watch and to shorten), and its
//! `g3proxy -t` line against the group's config. A command the page shows must work.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use g3proxy_tests::{Echo, Group, open_connect_tunnel, roundtrip, wait_until};

/// The lines inside the page's ```sh blocks.
fn shell_lines(page: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in page.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            text if inside && !text.is_empty() => lines.push(text.to_string()),
            _ => {}
        }
    }
    lines
}

#[test]
fn every_runbook_command_works() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks.md"))
            .expect("docs/runbooks.md");
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("basic");
    group.start();
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"held");
    // The file the user lock-out runbook publishes, where its command line finds it.
    std::fs::write(
        group.dir.join("users-blocked.json"),
        r#"[{"name": "leaked", "token": null, "block_and_delay": "2s"}]"#,
    )
    .expect("users file");
    let ctl = |args: &[&str]| {
        Command::new(g3proxy_tests::bin("g3proxy-ctl"))
            .current_dir(&group.dir)
            .arg("-C")
            .arg(&group.control_dir)
            .args(["-G", &group.name])
            .args(args)
            .output()
            .expect("g3proxy-ctl")
    };
    let mut ran = 0;
    for line in shell_lines(&page) {
        if let Some(rest) = line.strip_prefix("$ctl ") {
            let args: Vec<&str> = rest.split_whitespace().collect();
            if args.contains(&"-w") {
                // The watch runs until stopped: one view is enough.
                let frames = group.dir.join("watch.txt");
                let mut watching = Command::new(g3proxy_tests::bin("g3proxy-ctl"))
                    .arg("-C")
                    .arg(&group.control_dir)
                    .args(["-G", &group.name])
                    .args(&args)
                    .args(["--interval", "0.2"])
                    .stdout(std::fs::File::create(&frames).unwrap())
                    .spawn()
                    .expect("g3proxy-ctl -w");
                wait_until(Duration::from_secs(10), "a view of the fleet", || {
                    let seen = std::fs::read_to_string(&frames).unwrap_or_default();
                    seen.contains("draining: 1 task left").then_some(())
                });
                let _ = watching.kill();
                let _ = watching.wait();
            } else {
                let output = ctl(&args);
                assert!(
                    output.status.success(),
                    "{line}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            ran += 1;
        } else if line.starts_with("g3proxy -t -c ") {
            let output = Command::new(g3proxy_tests::bin("g3proxy"))
                .args(["-t", "-c"])
                .arg(&group.config)
                .output()
                .expect("g3proxy -t");
            assert!(output.status.success(), "{line}");
        }
    }
    assert!(ran >= 10, "only {ran} $ctl lines ran");
    // After the page's last step (offline, then cancel-shutdown) the node still serves.
    let mut fresh = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut fresh, b"still serving");
}
