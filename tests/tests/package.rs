//! Scenario: the .deb, built with Debian's own tools and installed. `dpkg-buildpackage`
//! builds it from the repository's `debian/` (with the test build's binaries, stripped, so
//! nothing compiles twice); it is unpacked into a root the test owns and its own unit runs
//! under a real systemd: `systemctl start`, a request, `systemctl reload`, the hot upgrade
//! (`systemctl restart`) under load losing nothing. Then the guide's upgrade procedure with a
//! newer package: its files put in place as dpkg does (each renamed over the old one),
//! `systemctl daemon-reload`, `systemctl restart` under load, zero failed requests, and the
//! new supervisor runs the new binary. Man pages and completions are in the package.

use std::path::{Path, PathBuf};
use std::process::Command;

use g3proxy_tests::systemd::{UnitRun, check};
use g3proxy_tests::{Echo, Group, Origin, bin};

/// What `debian/rules` and `ci/install-files.sh` read from the source tree.
const PACKAGE_INPUTS: [&str; 8] = [
    "debian",
    "ci",
    "systemd",
    "etc",
    "examples",
    "docs",
    "README.md",
    "ARCHITECTURE.md",
];

fn run(command: &mut Command, what: &str) -> std::process::Output {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    check(output, what)
}

/// Builds the .deb in `scratch` from the repository's packaging and the test binaries.
fn build_deb(scratch: &Path) -> PathBuf {
    assert!(
        Path::new("/usr/bin/dh").exists() && Path::new("/usr/bin/dpkg-buildpackage").exists(),
        "debhelper is not installed (ci/setup.sh installs it)"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = scratch.join("g3proxy");
    std::fs::create_dir_all(&src).unwrap();
    for input in PACKAGE_INPUTS {
        run(
            Command::new("cp").arg("-r").arg(repo.join(input)).arg(&src),
            "copy the packaging inputs",
        );
    }
    // Stripped copies: the package's own strip and dwarf passes over 200 MB of debug
    // binaries would take most of a minute.
    let bins = scratch.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    for name in ["g3proxy", "g3proxy-worker", "g3proxy-ctl"] {
        run(
            Command::new("strip")
                .arg("-o")
                .arg(bins.join(name))
                .arg(bin(name)),
            "strip",
        );
    }
    run(
        Command::new("dpkg-buildpackage")
            .args(["-b", "-us", "-uc", "-d"])
            .current_dir(&src)
            .env("G3PROXY_BIN_DIR", &bins)
            .env("DEB_BUILD_OPTIONS", "noautodbgsym"),
        "dpkg-buildpackage",
    );
    std::fs::read_dir(scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb")
}

/// The same package as a newer version (`dpkg-deb` unpacked, the version raised, packed).
fn newer_version(deb: &Path, scratch: &Path) -> PathBuf {
    let tree = scratch.join("newer");
    run(
        Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree),
        "dpkg-deb -R",
    );
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("Version")
        .to_string();
    let newer = format!("{version}+upgrade1");
    std::fs::write(&control, text.replace(&version, &newer)).unwrap();
    let out = scratch.join(format!("g3proxy_{newer}_amd64.deb"));
    run(
        Command::new("dpkg-deb").arg("-b").arg(&tree).arg(&out),
        "dpkg-deb -b",
    );
    let listed = run(
        Command::new("dpkg-deb").arg("-f").arg(&out).arg("Version"),
        "dpkg-deb -f",
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), newer);
    out
}

/// Puts `deb`'s files under `root` as dpkg does: each written beside its place and renamed
/// over the old one, so a running binary keeps its old file.
fn install(deb: &Path, root: &Path, staging: &Path) {
    let _ = std::fs::remove_dir_all(staging);
    run(
        Command::new("dpkg").arg("-x").arg(deb).arg(staging),
        "dpkg -x",
    );
    place(staging, staging, root);
}

fn place(dir: &Path, staging: &Path, root: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let target = root.join(path.strip_prefix(staging).unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            place(&path, staging, root);
        } else {
            std::fs::rename(&path, &target).unwrap();
        }
    }
}

#[test]
fn the_deb_installs_runs_and_upgrades_under_load() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    // Outside /tmp: the test systemd has its own.
    let group = Group::new_in("workers", Path::new(env!("CARGO_TARGET_TMPDIR")));
    let scratch = group.dir.join("package");
    let deb = build_deb(&scratch);
    let newer = newer_version(&deb, &scratch);

    let root = group.dir.join("root");
    install(&deb, &root, &scratch.join("staging"));
    for file in [
        "usr/bin/g3proxy",
        "usr/bin/g3proxy-worker",
        "usr/bin/g3proxy-ctl",
        "usr/share/man/man1/g3proxy.1.gz",
        "usr/share/man/man1/g3proxy-ctl.1.gz",
        "usr/share/man/man1/g3proxy-worker.1.gz",
        "usr/share/bash-completion/completions/g3proxy-ctl",
        "usr/share/zsh/vendor-completions/_g3proxy",
        "usr/share/fish/vendor_completions.d/g3proxy.fish",
        "usr/share/doc/g3proxy/examples/default/main.yml",
        "usr/share/doc/g3proxy/runbooks.md.gz",
    ] {
        assert!(root.join(file).exists(), "the package has no {file}");
    }
    let unit_path = root.join("lib/systemd/system/g3proxy@.service");
    let unit = std::fs::read_to_string(&unit_path).expect("the package's unit");
    let bin_dir = root.join("usr/bin");
    let run = UnitRun::boot(&group, &unit, &bin_dir);

    run.systemctl("start");
    assert_eq!(run.property("ActiveState"), "active");
    assert_eq!(
        g3proxy_tests::http_get(group.http_proxy(), origin.addr)
            .unwrap()
            .1,
        b"hello"
    );
    run.systemctl("reload");
    run.restart_under_load(&origin, &echo);

    // The guide's hot upgrade: install the new package, daemon-reload, restart.
    let old_binary = std::fs::metadata(bin_dir.join("g3proxy")).unwrap();
    install(&newer, &root, &scratch.join("staging"));
    let new_binary = std::fs::metadata(bin_dir.join("g3proxy")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        old_binary.ino(),
        new_binary.ino(),
        "the binary was replaced"
    );
    run.replace_unit(&std::fs::read_to_string(&unit_path).unwrap());
    check(run.systemd.systemctl(&["daemon-reload"]), "daemon-reload");
    let main = run.restart_under_load(&origin, &echo);
    // Read inside the namespace, where the pid is systemd's; a replaced file would read
    // "(deleted)".
    let exe = check(
        run.systemd.run(&["readlink", &format!("/proc/{main}/exe")]),
        "readlink",
    );
    assert_eq!(
        String::from_utf8_lossy(&exe.stdout).trim(),
        bin_dir.join("g3proxy").display().to_string(),
        "runs the new package's binary"
    );

    run.stop();
}
