//! Loader tests over real files in a temporary directory: g3proxy's layouts and spellings
//! load, and every kind of mistake is reported with its file, path and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    let resolvers::ResolverType::CAres(cares) = &config.resolvers[0].resolver_type else {
        panic!("resolver 0 is c-ares");
    };
    assert_eq!(cares.server.0.len(), 2);
    let escapers::EscaperType::DirectFixed(direct) = &config.escapers[0].escaper_type else {
        panic!("escaper 0 is direct_fixed");
    };
    assert_eq!(
        direct.direct.resolve_strategy.query,
        escapers::QueryStrategy::Ipv4Only
    );
    assert!(
        direct
            .direct
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
                    "{BASE}server:\n  - {{name: a, type: plain_tcp_port, server: b}}\n  - {{name: b, type: plain_tcp_port, server: c}}\n  - {{name: c, type: plain_tcp_port, server: a}}\n"
                ),
            )],
            "main.yml: server[0].name (line 6): server references form a cycle: a -> b -> c -> a",
        ),
        (
            &[(
                "main.yml",
                &format!(
                    "{BASE}server:\n  - name: a\n    type: plain_tls_port\n    server: a2\n    tls_server:\n      certificate: missing.pem\n      private_key: missing.key\n"
                ),
            )],
            "main.yml: server[0].tls_server.certificate (line 10): cannot read",
        ),
        (
            &[(
                "main.yml",
                &format!("{BASE}server:\n  - name: a\n    type: plain_quic_port\n"),
            )],
            "main.yml: server[0].type (line 7): server type plain_quic_port is not supported by this build yet",
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
                    "{BASE}user_group:\n  - name: g\nserver:\n  - name: a\n    type: tcp_stream\n    escaper: default\n    upstream: 127.0.0.1:1\n    auth_by_client_ip: true\n    user-group: g\n"
                ),
            )],
            "main.yml: server[0].user_group (line 13): user group \"g\" is of type basic, and a tcp_stream server finds its users by connection facts (auth_by_*): it needs a facts group",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    static_users:\n      - name: a\n        token: {salt: 113323bdab6fd2cc, md5: 5c81}\n",
            )],
            "main.yml: user_group[0].static_users[0].token (line 5): md5 must be 16 bytes",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    static_users:\n      - name: a\n        audit: {}\n",
            )],
            "main.yml: user_group[0].static_users[0].audit (line 5): this key is not supported by this build yet",
        ),
        (
            &[(
                "main.yml",
                "escaper:\n  - {name: a, type: dummy_deny}\n  - {name: b, type: dummy_deny}\n  - name: geo\n    type: route_geoip\n    resolver: none\n    default_next: a\n    geo_rules:\n      - {next: a, countries: US}\n      - {next: b, countries: [USA]}\n",
            )],
            "main.yml: escaper[2].geo_rules (line 9): country \"US\" is listed for both a and b",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    static_users:\n      - name: a\n        explicit_sites:\n          - {id: s, child_match: example.net}\n          - {id: t, child_match: .example.net}\n",
            )],
            "main.yml: user_group[0].static_users[0].explicit_sites (line 6): child_match example.net is in two sites (the second is t)",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    type: ldap\n    ldap_url: ldap://127.0.0.1/dc=example\n    tls_client: {}\n",
            )],
            "main.yml: user_group[0] (line 2): tls_client with an ldap:// url would need StartTLS",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    type: ldap\n    ldap_url: ldap://127.0.0.1\n",
            )],
            "main.yml: user_group[0].ldap_url (line 4): invalid ldap_url \"ldap://127.0.0.1\": no base dn",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    source: {type: lua, script: x.lua}\n",
            )],
            "main.yml: user_group[0].source (line 3): user source type lua is not supported by this build",
        ),
        (
            &[(
                "main.yml",
                "user_group:\n  - name: g\n    static_users:\n      - name: a\n      - name: a\n",
            )],
            "main.yml: user_group[0] (line 2): duplicate static user \"a\"",
        ),
        (
            &[(
                "main.yml",
                "escaper:\n  - name: d\n    type: direct_fixed\n    extra_metrics_tags:\n      site: \"a,b\"\n",
            )],
            "main.yml: escaper[0].extra_metrics_tags (line 5): metric tag \"site\": \"a,b\": names and values take letters, digits and -_./ only (and a name is not empty)",
        ),
        (
            &[(
                "main.yml",
                "server:\n  - name: s\n    type: http_proxy\n    escaper: e\n    task_log_flush_interval: 0s\n",
            )],
            "main.yml: server[0].task_log_flush_interval (line 5):",
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

/// Every numeric key, given the extremes an operator (or a typo) might write: the loader
/// answers with a positioned error or a value inside the key's range, and never panics.
#[test]
fn numeric_extremes_are_errors_or_in_range() {
    let keys: &[(&str, &str)] = &[
        ("runtime", "thread_number"),
        ("runtime", "thread_stack_size"),
        ("runtime", "max_io_events_per_tick"),
        ("runtime", "server_offline_delay"),
        ("runtime", "task_wait_delay"),
        ("runtime", "task_wait_timeout"),
        ("runtime", "task_quit_timeout"),
        ("runtime", "generation_ready_timeout"),
        ("runtime", "max_draining_generations"),
        ("worker", "thread_number"),
        ("worker", "thread_number_per_runtime"),
        ("worker", "thread_stack_size"),
        ("worker", "max_io_events_per_tick"),
        ("http", "req_header_recv_timeout"),
        ("http", "rsp_header_recv_timeout"),
        ("http", "req_header_max_size"),
        ("http", "rsp_header_max_size"),
        ("http", "pipeline_read_idle_timeout"),
        ("http", "task_idle_check_interval"),
        ("http", "task_idle_max_count"),
        ("http", "tcp_copy_buffer_size"),
        ("socks", "negotiation_timeout"),
        ("socks", "task_idle_check_interval"),
        ("socks", "task_idle_max_count"),
        ("socks", "tcp_copy_buffer_size"),
        ("resolver", "each_timeout"),
        ("resolver", "each_tries"),
        ("escaper", "tcp_connect: {max_retry"),
        ("escaper", "tcp_connect: {each_timeout"),
        ("listen", "instance"),
        ("listen", "backlog"),
    ];
    let extremes = [
        "0",
        "-1",
        "0s",
        "1.5",
        "1e308",
        "NaN",
        "inf",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999h",
        "10000000000000000000s",
        "18446744073709551615s",
        "5000",
        "100000",
        "16777216000",
        "1T",
    ];
    let mut refused = 0;
    for (section, key) in keys {
        for value in extremes {
            let close = if key.contains('{') { "}" } else { "" };
            let entry = format!("{key}: {value}{close}");
            let main = match *section {
                "runtime" | "worker" => format!("{section}:\n  {entry}\n"),
                _ => String::new(),
            };
            let server_extra = |which: &str| {
                if *section == which {
                    format!(", {entry}")
                } else {
                    String::new()
                }
            };
            let listen = if *section == "listen" {
                format!("{{address: \"127.0.0.1:3128\", {entry}}}")
            } else {
                "3128".to_string()
            };
            let text = format!(
                "{main}resolver:\n  - {{name: default, type: c-ares{}}}\nescaper:\n  - {{name: default, type: direct_fixed, resolver: default{}}}\nserver:\n  - {{name: http, type: http_proxy, escaper: default, listen: {listen}{}}}\n  - {{name: socks, type: socks_proxy, escaper: default{}}}\n",
                server_extra("resolver"),
                server_extra("escaper"),
                server_extra("http"),
                server_extra("socks"),
            );
            let bundle = ConfigBundle {
                entry: PathBuf::from("/cfg/main.yml"),
                files: [(PathBuf::from("/cfg/main.yml"), text.clone())].into(),
                ..Default::default()
            };
            match load_bundle(&bundle) {
                Ok(config) => {
                    let runtime = &config.runtime;
                    for duration in [
                        runtime.task_wait_timeout.0,
                        runtime.task_quit_timeout.0,
                        runtime.server_offline_delay.0,
                        runtime.generation_ready_timeout.0,
                    ] {
                        assert!(duration <= crate::types::MAX_DURATION, "{text}");
                    }
                    assert!(config.worker_count() <= 1024, "{text}");
                }
                Err(error) => {
                    refused += 1;
                    assert!(
                        error.file.ends_with("main.yml") && error.line > 0,
                        "{key}: {value}: {error}"
                    );
                }
            }
        }
    }
    assert!(refused > keys.len() * 5, "only {refused} extremes refused");
}

#[test]
fn out_of_range_values_name_their_key_and_line() {
    let check = |text: &str, want: &str| {
        let bundle = ConfigBundle {
            entry: PathBuf::from("/cfg/main.yml"),
            files: [(PathBuf::from("/cfg/main.yml"), text.to_string())].into(),
            ..Default::default()
        };
        let got = load_bundle(&bundle).unwrap_err().to_string();
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    };
    const BASE: &str = "resolver:\n  - {name: default, type: c-ares}\nescaper:\n  - {name: default, type: direct_fixed, resolver: default}\nserver:\n  - name: http\n    type: http_proxy\n    escaper: default\n";
    check(
        &format!("{BASE}    req_header_recv_timeout: 99999999999999999999h\n"),
        "main.yml: server[0].req_header_recv_timeout (line 9): invalid duration: \"99999999999999999999h\"",
    );
    check(
        &format!("{BASE}    req_header_recv_timeout: 0s\n"),
        "main.yml: server[0].req_header_recv_timeout (line 9): 0s is out of range: allowed is 1ms to 3650d",
    );
    check(
        &format!("{BASE}    req_header_max_size: 0\n"),
        "main.yml: server[0].req_header_max_size (line 9): 0 is out of range: allowed is 1KiB to 16MiB",
    );
    check(
        &format!("runtime:\n  thread_number: 100000\n{BASE}"),
        "main.yml: runtime.thread_number (line 2): 100000 is out of range: allowed is 1 to 1024",
    );
    check(
        &format!("worker:\n  thread_number: 5000\n{BASE}"),
        "main.yml: worker.thread_number (line 2): 5000 is out of range",
    );
}

#[test]
fn a_panic_while_loading_is_a_refused_config() {
    let error = without_panics::<()>("/cfg/main.yml", || panic!("a loader bug")).unwrap_err();
    assert_eq!(error.file, "/cfg/main.yml");
    assert!(error.message.contains("a loader bug"), "{error}");
}

/// g3proxy loads a config whose references point nowhere, and so do we: the worker stands in
/// a module that refuses everything, and the loader says so.
#[test]
fn missing_references_load_with_warnings() {
    let dir = write_tree(&[(
        "main.yml",
        "resolver:\n  - {name: default, type: c-ares}\nescaper:\n  - {name: default, type: direct_fixed, resolver: nowhere}\nserver:\n  - name: a\n    type: http_proxy\n    escaper: gone\n  - {name: port, type: plain_tcp_port, server: vanished, listen: 1}\n",
    )]);
    let (config, _) = load(&dir).unwrap();
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "main.yml: escaper[0].resolver (line 4): resolver \"nowhere\" does not exist: its lookups are denied",
            "main.yml: server[0].escaper (line 8): escaper \"gone\" does not exist: every task of this server is denied",
            "main.yml: server[1].server (line 9): server \"vanished\" does not exist: its connections are closed",
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Common and type keys are decoded once each; a key that neither takes is refused where it is.
#[test]
fn keys_of_neither_part_are_refused_at_their_line() {
    let dir = write_tree(&[(
        "main.yml",
        "escaper:\n  - {name: e, type: direct_fixed, resolver: r}\nserver:\n  - name: p\n    type: plain_tcp_port\n    server: s\n    task_idle_max_count: 3\n    escaper: e\n",
    )]);
    let error = load(&dir).unwrap_err().to_string();
    assert_eq!(
        error,
        "main.yml: server[0].escaper (line 8): unknown field `escaper`"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Chaining and routing entries: g3proxy's list and map rule forms, weighted next hops, and
/// the mistakes decoding alone would not see.
#[test]
fn proxy_http_and_route_upstream_entries() {
    let dir = write_tree(&[(
        "main.yml",
        "escaper:
  - {name: direct, type: direct_fixed, resolver: r}
  - name: up
    type: proxy_http
    proxy_addr: [\"127.0.0.1:8080\", {addr: \"[::1]\", weight: 3}]
    proxy_username: me
    proxy_password: hunter2
  - name: route
    type: route_upstream
    exact_match: {up: [a.example, 192.0.2.1], Route-B: b.example}
    child_match:
      - Next: up
        Domains: [.Example.NET.]
    suffix_match: [{next: up, suffix: -internal}]
    subnet_match: [{next: direct, subnets: 10.0.0.0/8}]
    default_next: direct
",
    )]);
    let (config, _) = load(&dir).unwrap();
    let escapers::EscaperType::ProxyHttp(up) = &config.escapers[1].escaper_type else {
        panic!("escaper 1 is proxy_http");
    };
    let addrs: Vec<String> = up
        .next_hop
        .proxy_addr
        .iter()
        .map(|a| format!("{} {}", a.addr.with_default_port(3128), a.weight))
        .collect();
    assert_eq!(addrs, ["127.0.0.1:8080 1", "[::1]:3128 3"]);
    assert!(!format!("{config:?}").contains("hunter2"));
    let escapers::EscaperType::RouteUpstream(route) = &config.escapers[2].escaper_type else {
        panic!("escaper 2 is route_upstream");
    };
    assert_eq!(
        route.child_match,
        [("up".to_string(), vec!["example.net".to_string()])]
    );
    assert_eq!(route.suffix_match[0].1, ["-internal"]);
    // Escaper names as keys are kept as written; config keys in a rule are compared as any key.
    let nexts: Vec<&str> = route
        .exact_match
        .iter()
        .map(|(next, _)| next.as_str())
        .collect();
    assert_eq!(nexts, ["Route-B", "up"]);
    // Routes are built after what they route to.
    assert_eq!(config.escapers[2].name(), "route");
    std::fs::remove_dir_all(&dir).unwrap();

    let base = "escaper:\n  - {name: d, type: direct_fixed, resolver: r}\n";
    let cases = [
        (
            "  - {name: p, type: proxy_http, proxy_addr: \"proxy.example:3128\"}\n",
            "main.yml: escaper[1] (line 3): proxy_addr names a host: set resolver to look it up",
        ),
        (
            "  - {name: p, type: proxy_http, proxy_addr: []}\n",
            "main.yml: escaper[1] (line 3): proxy_addr is empty: name at least one next-hop proxy",
        ),
        (
            "  - {name: p, type: proxy_http, proxy_addr: \"127.0.0.1\", proxy_username: \"a:b\"}\n",
            "main.yml: escaper[1] (line 3): proxy_username may not contain ':'",
        ),
        (
            "  - {name: f, type: failover, primary: d, standby: d}\n",
            "primary_next and standby_next are both \"d\"",
        ),
        (
            "  - {name: f, type: route_failover, primary: d, standby: g}\n  - {name: g, type: route_failover, primary: f, standby: d}\n",
            "cycle",
        ),
        (
            "  - {name: p, type: proxy_http, proxy_addr: \"127.0.0.1\", proxy_password: x}\n",
            "proxy_password without a username",
        ),
        (
            "  - {name: r, type: route_upstream, default_next: d, child_match: {d: [a.example], Other-Name: [a.example]}}\n",
            "domain \"a.example\" is listed for both Other-Name and d",
        ),
        (
            "  - {name: r, type: route_upstream, default_next: d, regex_match: [{next: d, rules: [\"a.*\"]}]}\n",
            "regex_match is not supported by this build yet",
        ),
        (
            "  - {name: r, type: route_upstream, default_next: d, exact_match: [{next: d, subnets: [10.0.0.0/8]}]}\n",
            "unknown key subnets: a rule here has next and hosts or host",
        ),
        (
            "  - {name: r, type: route_upstream, default_next: d, subnet_match: [{next: d, subnets: [a.example]}]}\n",
            "invalid subnet \"a.example\"",
        ),
    ];
    for (entry, want) in cases {
        let error = load_error(&[("main.yml", &format!("{base}{entry}"))]);
        assert!(error.contains(want), "{entry}: {error}");
    }
}

/// The config loader's fuzz corpus (`proto/fuzz/corpus/config_load/`, split as the fuzz target
/// splits it) and byte mutations of it load or are refused, and never through the panic guard.
#[test]
fn fuzz_corpus_configs_never_reach_the_panic_guard() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/fuzz/corpus/config_load");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("config_load corpus")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    inputs.sort();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut mutated = Vec::new();
    for input in &inputs {
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes = input.clone();
            let at = (seed % bytes.len().max(1) as u64) as usize;
            const BYTES: &[u8] = b":- \n\t[]{}#&*!|>'\"0123456789.%";
            let byte = BYTES[(seed >> 32) as usize % BYTES.len()];
            if bytes.is_empty() || seed & 1 == 0 {
                bytes.insert(at.min(bytes.len()), byte);
            } else {
                bytes[at] = byte;
            }
            mutated.push(bytes);
        }
    }
    for input in inputs.iter().chain(&mutated) {
        let text = String::from_utf8_lossy(input);
        let (main, other) = text.split_once("\n#--\n").unwrap_or((&text, ""));
        let root = PathBuf::from("/fuzz");
        let bundle = ConfigBundle {
            entry: root.join("main.yml"),
            files: BTreeMap::from([
                (root.join("main.yml"), main.to_string()),
                (root.join("other.yml"), other.to_string()),
            ]),
            dirs: BTreeMap::new(),
        };
        if let Err(error) = load_bundle(&bundle) {
            assert!(
                !error.to_string().contains("internal error"),
                "{text:?}: {error}"
            );
        }
    }
}

/// The stream servers', transparent proxy's and reverse proxy's rules between keys and
/// between entries.
#[test]
fn stream_sni_tproxy_and_rproxy_mistakes_are_refused() {
    let base = "escaper:\n  - {name: d, type: direct_fixed, resolver: r}\nserver:\n";
    let cases = [
        (
            "  - {name: t, type: tcp_tproxy, escaper: d}\n",
            "a transparent proxy needs its own listen address",
        ),
        (
            "  - {name: t, type: tcp_tproxy, escaper: d, listen: 1234}\n  - {name: p, type: plain_tcp_port, listen: 1235, server: t}\n",
            "server \"t\" is a transparent proxy",
        ),
        (
            "  - {name: s, type: tcp_stream, escaper: d, upstream: \"127.0.0.1:1\", upstream_tls_name: a.example}\n",
            "upstream_tls_name without tls_client",
        ),
        (
            "  - {name: s, type: tcp_stream, escaper: d, upstream: \"127.0.0.1\"}\n",
            "upstream 127.0.0.1 has no port",
        ),
        (
            "  - {name: s, type: tls_stream, escaper: d, upstream: \"127.0.0.1:1\"}\n",
            "tls_stream needs tls_server",
        ),
        (
            "  - {name: s, type: sni_proxy, escaper: d, allowed_hosts: [{exact_match: a.example, redirect_port: 0}]}\n",
            "redirect_port 0 is no port",
        ),
        (
            "  - {name: s, type: sni_proxy, escaper: d, allowed_hosts: [{exact_match: a.example}, {exact_match: A.example}]}\n",
            "\"A.example\" is listed twice",
        ),
        (
            "  - {name: s, type: sni_proxy, escaper: d, allowed_hosts: [{redirect_host: x}, {set_default: true, redirect_host: y}]}\n",
            "allowed_hosts[1] is a second default after allowed_hosts[0]",
        ),
        (
            "  - {name: s, type: http_proxy, escaper: d, tcp_misc_opts: {ttl: 0}}\n",
            "0 is out of range: allowed is 1 to 255",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d}\n",
            "missing field `hosts`",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, hosts: []}\n",
            "hosts is empty",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, hosts: [{exact_match: a.example}]}\n",
            "missing field `upstream`",
        ),
        (
            "  - {name: r, type: http_gateway, escaper: d, hosts: [{upstream: \"127.0.0.1:1\", tls_name: a.example}]}\n",
            "hosts[0].tls_name without tls_client",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, enable_tls_server: true, hosts: {upstream: \"127.0.0.1:1\"}}\n",
            "enable_tls_server needs a certificate",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, hosts: [{child_match: 127.0.0.1, upstream: a}]}\n",
            "is an address, not a parent domain",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, hosts: [{upstream: a}, {upstream: b}]}\n",
            "hosts[1] is a second default after hosts[0]",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, server_id: \"a b\", hosts: {upstream: a}}\n",
            "server_id \"a b\" must be printable ASCII",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, append_forwarded_for: sideways, hosts: {upstream: a}}\n",
            "unknown forwarded header type sideways",
        ),
        // g3's parser has no auditor for http_rproxy, whatever its documentation says.
        (
            "  - {name: r, type: http_rproxy, escaper: d, auditor: x, hosts: {upstream: a}}\n",
            "unknown field `auditor`",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, hosts: [{exatc_match: a.example, upstream: a}]}\n",
            "unknown field `exatc_match`",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, bogus: 1, hosts: {upstream: a}}\n",
            "server[0].bogus (line 4): unknown field `bogus`",
        ),
        // The HTTP session keys are a part of their own: still checked, still known.
        (
            "  - {name: r, type: http_rproxy, escaper: d, req_header_max_size: 10, hosts: {upstream: a}}\n",
            "req_header_max_size",
        ),
        (
            "  - {name: r, type: http_rproxy, escaper: d, pipeline_size: 0, hosts: {upstream: a}}\n",
            "0 is out of range: allowed is 1 to 1000000",
        ),
    ];
    for (servers, want) in cases {
        let error = load_error(&[("main.yml", &format!("{base}{servers}"))]);
        assert!(error.contains(want), "{servers}: {error}");
    }
}

/// Resolver entries: g3's forms of each type's keys (a string or a list of servers, the
/// encryption as a map or a TLS name, TTL aliases), fail_over's references in build order and
/// warned about when missing, and the keys this build refuses by name.
#[test]
fn resolver_entries() {
    let dir = write_tree(&[(
        "main.yml",
        "resolver:\n  - name: fo\n    type: fail_over\n    primary: dot\n    standby: cares\n    delay: 200ms\n    negative_ttl: 5\n  - name: cares\n    type: c-ares\n    server: \"127.0.0.1:5353 ::1\"\n    positive_ttl: 600\n    protective_query_timeout: 5s\n  - name: dot\n    type: hickory\n    server: 192.0.2.1 192.0.2.2\n    encryption: dns.example\n    retry_attempts: 3\n  - name: doh\n    type: hickory\n    server: [192.0.2.3]\n    encrypt: {protocol: doh, tls_name: doh.example}\n  - {name: none, type: deny_all}\n  - {name: lost, type: failover, primary: gone, standby: none}\n",
    )]);
    let (config, _) = load(&dir).unwrap();
    let names: Vec<&str> = config.resolvers.iter().map(|r| r.name()).collect();
    // Referenced resolvers come before those that refer to them.
    assert_eq!(names, ["dot", "cares", "fo", "doh", "none", "lost"]);
    let by_name = |name: &str| {
        let found = config.resolvers.iter().find(|r| r.name() == name);
        found.unwrap().clone()
    };
    let cares = by_name("cares");
    let resolvers::ResolverType::CAres(c) = &cares.resolver_type else {
        panic!("c-ares");
    };
    assert_eq!(c.server.0.len(), 2);
    assert_eq!(c.server.0[1].port(), 53);
    assert_eq!(cares.ttl.positive_max_ttl, 600);
    assert_eq!(cares.ttl.positive_min_ttl, 30);
    assert_eq!(
        cares.common.protective_query_timeout.0,
        Duration::from_secs(5)
    );
    let resolvers::ResolverType::Hickory(dot) = &by_name("dot").resolver_type else {
        panic!("hickory");
    };
    assert_eq!(dot.server.0.len(), 2);
    assert_eq!(dot.each_tries, 3);
    assert_eq!(dot.port(), 853);
    let encryption = dot.encryption.as_ref().unwrap();
    assert_eq!(encryption.protocol, resolvers::DnsProtocol::Tls);
    assert_eq!(encryption.tls_name, "dns.example");
    let resolvers::ResolverType::Hickory(doh) = &by_name("doh").resolver_type else {
        panic!("hickory");
    };
    assert_eq!(doh.port(), 443);
    let resolvers::ResolverType::FailOver(fo) = &by_name("fo").resolver_type else {
        panic!("fail_over");
    };
    assert_eq!(fo.fallback_delay.0, Duration::from_millis(200));
    assert_eq!(fo.negative_ttl, 5);
    assert_eq!(by_name("none").type_name(), "deny-all");
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "main.yml: resolver[5].primary (line 23): resolver \"gone\" does not exist: its lookups are denied"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();

    for (entry, expected) in [
        (
            "{name: r, type: hickory}",
            "resolver[0] (line 2): missing field `server`",
        ),
        (
            "{name: r, type: hickory, server: 1.1.1.1, encryption: {protocol: dox, tls_name: x}}",
            "resolver[0].encryption.protocol (line 2): unknown DNS encryption protocol dox: dot, doh, doh3 or doq",
        ),
        (
            "{name: r, type: hickory, server: dns.example}",
            "resolver[0].server (line 2): invalid name server address \"dns.example\": an IP address",
        ),
        (
            "{name: r, type: c-ares, udp_max_quires: 10}",
            "resolver[0].udp_max_quires (line 2): this key is not supported by this build yet",
        ),
        (
            "{name: r, type: deny_all, server: 1.1.1.1}",
            "resolver[0].server (line 2): unknown field `server`",
        ),
        (
            "{name: r, type: fail_over, primary: r, standby: r}",
            "resolver[0].name (line 2): resolver references form a cycle: r -> r",
        ),
    ] {
        let error = load_error(&[("main.yml", &format!("resolver:\n  - {entry}\n"))]);
        assert!(
            error.starts_with(&format!("main.yml: {expected}")),
            "{entry}: {error}"
        );
    }
}

/// The `log` section: a driver name for every kind, or a map of kinds and shorthands, each
/// driver a name or a one-key map with its config; what this build cannot do is refused.
#[test]
fn log_section_forms() {
    use log::{LogDriver, SyslogTarget};
    let load_log = |text: &str| {
        let dir = write_tree(&[("main.yml", text)]);
        let loaded = load(&dir).map(|(config, _)| config.log);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    };
    assert_eq!(
        load_log("log: stdout\n").unwrap().task(),
        &LogDriver::Stdout
    );
    let config = load_log(
        "log:\n  default: journal\n  task:\n    syslog:\n      target_udp: 127.0.0.1:514\n      format_rfc5424: {enterprise_id: 32473, message_id: task}\n    async_channel_size: 4096\n",
    )
    .unwrap();
    assert!(matches!(config.default, LogDriver::Journal(_)));
    let LogDriver::Syslog(syslog) = config.task() else {
        panic!("task logs to syslog");
    };
    assert_eq!(
        syslog.target,
        SyslogTarget::Udp("127.0.0.1:514".parse().unwrap())
    );
    let ids = syslog.rfc5424.as_ref().expect("RFC 5424");
    assert_eq!(
        (ids.enterprise_id, ids.message_id.as_deref()),
        (32473, Some("task"))
    );
    let shorthand = load_log("log:\n  syslog: {target_unix: /run/syslog.sock}\n").unwrap();
    assert!(matches!(
        shorthand.task(),
        LogDriver::Syslog(s) if s.target == SyslogTarget::Unix("/run/syslog.sock".into())
    ));
    for (text, said) in [
        (
            "log: {fluentd: {bind_ip: 127.0.0.1}}\n",
            "not supported by this build yet",
        ),
        ("log: papertrail\n", "unknown log driver papertrail"),
        (
            "log: {task: {syslog: {target_udp: 127.0.0.1:514, target_unix: /dev/log}}}\n",
            "unix or udp, not both",
        ),
        ("log: {tasks: stdout}\n", "unknown key tasks"),
    ] {
        let error = load_log(text).unwrap_err().to_string();
        assert!(error.contains(said), "{text}: {error}");
    }
}
