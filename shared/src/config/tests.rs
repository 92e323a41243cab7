//! Loader tests over real files in a temporary directory: g3proxy's layouts and spellings
//! load, and every kind of mistake is reported with its file, path and line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

fn write_tree(files: &[(&str, &str)]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "g3proxy-config-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

const MAIN: &str = "\
runtime:
  task_wait_timeout: 1h 30m
worker:
  thread_number: 3
  sched_affinity: true
resolver:
  - name: default
    type: c-ares
    server: 127.0.0.1 ::1
escaper: escaper.d
server:
  - name: http
    type: HttpProxy
    escaper: default
    listen:
      address: \"127.0.0.1:3128\"
      backlog: 128
  - servers.yml
";

#[test]
fn g3proxy_layout_loads_with_its_spellings() {
    let dir = write_tree(&[
        ("main.yml", MAIN),
        (
            "escaper.d/default.yml",
            "name: default\ntype: direct_fixed\nresolver: default\nresolve_strategy: IPv4Only\negress_net_filter:\n  default: forbid\n  permit: 127.0.0.0/8\n",
        ),
        ("escaper.d/ignored.json", "not yaml: ["),
        (
            "servers.yml",
            "name: socks\ntype: socks_proxy\nescaper: default\nlisten: 1080\nlisten-in-worker: true\n---\nname: socks2\ntype: socks-proxy\nescaper: default\n",
        ),
    ]);
    let (config, bundle) = load(&dir).unwrap();
    assert_eq!(
        config.runtime.task_wait_timeout.0,
        Duration::from_secs(5400)
    );
    assert_eq!(config.worker_count(), 3);
    assert_eq!(
        config.servers.iter().map(|s| s.name()).collect::<Vec<_>>(),
        ["http", "socks", "socks2"]
    );
    assert!(config.server("socks").unwrap().listen_in_worker());
    assert_eq!(
        config.server("http").unwrap().listen().unwrap().backlog,
        128
    );
    let ResolverConfig::CAres(cares) = &config.resolvers[0];
    assert_eq!(cares.server.0.len(), 2);
    let EscaperConfig::DirectFixed(direct) = &config.escapers[0];
    assert_eq!(
        direct.resolve_strategy.query,
        escapers::QueryStrategy::Ipv4Only
    );
    assert!(
        direct
            .egress_network_filter
            .as_ref()
            .unwrap()
            .check("127.0.0.1".parse().unwrap())
            .is_permitted()
    );

    // The snapshot loads to the same config with the files gone.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(load_bundle(&bundle).unwrap(), config);
}

fn load_error(files: &[(&str, &str)]) -> String {
    let dir = write_tree(files);
    let error = load(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    error
}

#[test]
fn mistakes_name_file_path_and_line() {
    const BASE: &str = "resolver:\n  - {name: default, type: c-ares}\nescaper:\n  - {name: default, type: direct_fixed, resolver: default}\n";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("main.yml", "bogus: 1\n")],
            "main.yml: bogus (line 1): invalid key bogus",
        ),
        (
            &[
                ("main.yml", &format!("{BASE}server: s.d\n")),
                (
                    "s.d/a.yml",
                    "name: a\ntype: http_proxy\nescaper: default\nlisten: 1\nwat: 2\n",
                ),
            ],
            "s.d/a.yml: server[0].wat (line 5): unknown field `wat`",
        ),
        (
            &[(
                "main.yml",
                &format!(
                    "{BASE}server:\n  - name: a\n    type: http_proxy\n    escaper: nowhere\n"
                ),
            )],
            "main.yml: server[0].escaper (line 8): escaper \"nowhere\" does not exist",
        ),
        (
            &[(
                "main.yml",
                &format!("{BASE}server:\n  - name: a\n    type: tcp_stream\n"),
            )],
            "main.yml: server[0].type (line 7): server type tcp_stream is not supported by this build yet",
        ),
        (
            &[(
                "main.yml",
                &format!(
                    "{BASE}server:\n  - {{name: a, type: socks_proxy, escaper: default}}\n  - {{name: a, type: socks_proxy, escaper: default}}\n"
                ),
            )],
            "main.yml: server[1].name (line 7): duplicate server name \"a\"",
        ),
        (
            &[(
                "main.yml",
                &format!(
                    "{BASE}server:\n  - name: a\n    type: http_proxy\n    escaper: default\n    listen: 70000\n"
                ),
            )],
            "main.yml: server[0].listen (line 9): invalid port 70000",
        ),
        (
            &[(
                "main.yml",
                &format!(
                    "{BASE}user_group:\n  - name: g\nserver:\n  - name: a\n    type: http_proxy\n    escaper: default\n    user-group: g\n"
                ),
            )],
            "main.yml: server[0].user_group (line 11): user group \"g\" exists, but this build cannot authenticate users yet",
        ),
        (
            &[("main.yml", "server: missing.yml\n")],
            "missing.yml: cannot read",
        ),
        (
            &[("main.yml", "runtime:\n  task_wait_timeout: soon\n")],
            "main.yml: runtime.task_wait_timeout (line 2): invalid duration: \"soon\"",
        ),
    ];
    for (files, want) in cases {
        let got = load_error(files);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}

#[test]
fn entry_directory_finds_main_file() {
    let dir = write_tree(&[("g3proxy.yaml", "runtime: {}\n")]);
    assert_eq!(
        find_entry(&dir).unwrap().file_name().unwrap(),
        "g3proxy.yaml"
    );
    let empty = write_tree(&[("other.yml", "")]);
    assert!(
        find_entry(&empty)
            .unwrap_err()
            .to_string()
            .contains("no main.yaml")
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

/// Mutated configs (bytes flipped, inserted, removed, cut) load or fail with an error; the
/// loader never panics on what an operator might write.
#[test]
fn mutated_configs_never_panic() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    };
    let interesting = b" :-[]{}\n#&*'\"!|>0123456789abc";
    let base = MAIN.replace("  - servers.yml\n", "").replace(
        "escaper: escaper.d\n",
        "escaper:\n  - {name: default, type: direct_fixed, resolver: default}\n",
    );
    let mut bundle = ConfigBundle {
        entry: PathBuf::from("/cfg/main.yml"),
        ..Default::default()
    };
    let mut loaded = 0;
    for _ in 0..3_000 {
        let mut text = base.clone().into_bytes();
        for _ in 0..1 + next(3) {
            let at = next(text.len() + 1);
            match next(4) {
                0 if at < text.len() => text[at] = interesting[next(interesting.len())],
                1 => text.insert(at, interesting[next(interesting.len())]),
                2 if at < text.len() => {
                    text.remove(at);
                }
                _ => text.truncate(at.max(text.len() / 2)),
            }
        }
        bundle.files.insert(
            PathBuf::from("/cfg/main.yml"),
            String::from_utf8_lossy(&text).into_owned(),
        );
        match load_bundle(&bundle) {
            Ok(_) => loaded += 1,
            Err(error) => assert!(
                !error.file.is_empty() && !error.message.is_empty(),
                "{error:?}"
            ),
        }
    }
    assert!(
        loaded > 0,
        "some mutations are harmless and must still load"
    );
}
