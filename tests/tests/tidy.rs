//! Repository hygiene that review would otherwise have to catch: every Rust file opens with a
//! `//!` paragraph, and the shipped systemd unit passes `systemd-analyze verify`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&path, found);
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 30, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! paragraph: {missing:?}"
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("systemd/g3proxy@.service")).unwrap();
    let bin_dir = g3proxy_tests::bin("g3proxy")
        .parent()
        .unwrap()
        .display()
        .to_string();
    // verify checks that ExecStart binaries exist: point it at the ones just built.
    let dir = std::env::temp_dir().join(format!("g3proxy-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g3proxy@verify.service");
    std::fs::write(&path, unit.replace("/usr/bin/", &format!("{bin_dir}/"))).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for directive in [
        "Type=notify",
        "FileDescriptorStoreMax=",
        "KillMode=process",
        "ExecReload=/usr/bin/g3proxy-ctl",
        "offline",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
}
