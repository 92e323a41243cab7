//! Scenario: StatsD metrics into a UDP receiver of the test (it reads the DogStatsD line
//! format): after known traffic (10 requests, a tunnel of 1000 bytes, a refused login) the
//! server counts arrive with g3proxy's names and tags (with `extra_metrics_tags`), and so do
//! the listener's, the task logger's and a user's (requests, connections, bytes, a refused
//! login); a
//! reload in the middle leaves every count adding up; a worker killed with a tunnel open
//! has its gauge set back to 0 under its `stat_id`. The fleet metrics of our own count the
//! generations served and the worker restarted.

use std::time::Duration;

use g3proxy_tests::group::kill;
use g3proxy_tests::{
    Echo, Group, Origin, StatsdReceiver, curl, open_connect_tunnel, roundtrip, wait_until,
};
use nix::sys::signal::Signal;

#[test]
fn server_counts_add_up_across_a_reload_and_a_crash() {
    let statsd = StatsdReceiver::start();
    let port = statsd.port;
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    let text = format!(
        "stat:\n  target:\n    udp: 127.0.0.1:{port}\n  emit_interval: 100ms\nlog:\n  task: stdout\nresolver:\n  - name: default\n    type: c-ares\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: default\n    extra_metrics_tags: {{egress: lan}}\n    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}\nuser_group:\n  - name: g\n    static_users:\n      - name: locked\n      - name: hop\n        token: {{salt: 113323bdab6fd2cc, md5: 5c81f2becadde7fa5fde9026652ccc84, sha1: ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96}}\nserver:\n  - name: http\n    type: http_proxy\n    escaper: default\n    listen: \"127.0.0.1:{{{{http_port}}}}\"\n    extra_metrics_tags: {{service: web}}\n  - name: auth\n    type: http_proxy\n    escaper: default\n    user_group: g\n    listen: \"127.0.0.1:{{{{auth_port}}}}\"\n"
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let url = origin.url("/");
    let daemon_group = format!("daemon_group:{}", group.name);
    // (Each series also carries its module's extra_metrics_tags.)
    let http = ["server:http", daemon_group.as_str(), "service:web"];

    for _ in 0..10 {
        assert_eq!(curl(&["-x", &proxy, &url]), "hello");
    }
    wait_until(Duration::from_secs(10), "10 tasks counted", || {
        (statsd.total("g3proxy.server.task.total", &http) == 10).then_some(())
    });
    assert_eq!(statsd.total("g3proxy.server.connection.total", &http), 10);
    // g3's listen.* and logger.* series: each connection accepted, each task's event
    // written (to the worker's stdout).
    assert_eq!(statsd.total("g3proxy.listen.accepted", &http), 10);
    let instances = statsd.matching("g3proxy.listen.instance.count", "g", &http);
    assert_eq!(instances.last().map(|(v, _)| *v), Some(1), "{instances:?}");
    wait_until(Duration::from_secs(10), "the task log's counts", || {
        let task_log = ["logger:lt-http", daemon_group.as_str()];
        let count = |name| statsd.total(name, &task_log);
        (count("g3proxy.logger.message.total") >= 10
            && count("g3proxy.logger.message.pass") >= 10
            && count("g3proxy.logger.traffic.pass") > 1000)
            .then_some(())
    });
    {
        let alive = statsd.matching("g3proxy.server.task.alive", "g", &http);
        assert!(!alive.is_empty(), "no server.task.alive gauge");
        assert!(alive.iter().all(|(_, tags)| tags.contains("stat_id:")));
    }

    // A tunnel of 1000 bytes each way, and a refused login.
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, &[b'x'; 1000]);
    drop(tunnel);
    wait_until(Duration::from_secs(10), "the tunnel's bytes", || {
        let counted = |name| statsd.total(name, &["server:http", "transport:tcp"]);
        (counted("g3proxy.server.traffic.in.bytes") >= 1000
            && counted("g3proxy.server.traffic.out.bytes") >= 1000)
            .then_some(())
    });
    let auth = format!("http://127.0.0.1:{}", group.port("auth"));
    assert_eq!(
        g3proxy_tests::curl_status(&["-x", &auth, "-U", "locked:x", &url]),
        "407"
    );
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        let refused = statsd.total("g3proxy.server.forbidden.auth_failed", &["server:auth"]);
        (refused == 1).then_some(())
    });

    // The user's own series: three requests of user hop (password "toor"), each on a
    // connection of its own, and the refused login counted for user locked.
    for _ in 0..3 {
        assert_eq!(curl(&["-x", &auth, "-U", "hop:toor", &url]), "hello");
    }
    let hop = [
        "user_group:g",
        "user:hop",
        "user_type:Static",
        "server:auth",
        daemon_group.as_str(),
    ];
    let forwarded: Vec<&str> = hop
        .iter()
        .copied()
        .chain(["request:http_forward"])
        .collect();
    wait_until(Duration::from_secs(10), "the user's counts", || {
        (statsd.total("g3proxy.user.request.total", &forwarded) == 3
            && statsd.total("g3proxy.user.request.ready", &forwarded) == 3
            && statsd.total("g3proxy.user.connection.total", &hop) == 3
            && statsd.total(
                "g3proxy.user.connection.total",
                &["user:hop", "connection:http"],
            ) == 3
            && statsd.total("g3proxy.user.traffic.out.bytes", &forwarded) > 0
            && statsd.total("g3proxy.user.forbidden.auth_failed", &["user:locked"]) == 1)
            .then_some(())
    });
    // The same bytes toward the origin, through the escaper (with its extra tags).
    let upstream = ["user:hop", "escaper:default", "transport:tcp", "egress:lan"];
    wait_until(
        Duration::from_secs(10),
        "the user's upstream traffic",
        || {
            let from_origin = statsd.total("g3proxy.user.upstream.traffic.in.bytes", &upstream);
            (from_origin > 0
                && from_origin == statsd.total("g3proxy.user.traffic.out.bytes", &forwarded)
                && statsd.total("g3proxy.user.upstream.traffic.out.bytes", &upstream)
                    == statsd.total("g3proxy.user.traffic.in.bytes", &forwarded))
            .then_some(())
        },
    );
    let alive = statsd.matching("g3proxy.user.request.alive", "g", &forwarded);
    assert_eq!(alive.last().map(|(v, _)| *v), Some(0), "{alive:?}");

    // The escaper: a connection per request (ten, and hop's three) and the tunnel, and a
    // target its egress filter refuses.
    assert_eq!(
        g3proxy_tests::curl_status(&["-x", &proxy, "http://192.0.2.1/"]),
        "403"
    );
    wait_until(Duration::from_secs(10), "the escaper's counts", || {
        let escaper = ["escaper:default", daemon_group.as_str(), "egress:lan"];
        let count = |name| statsd.total(name, &escaper);
        (count("g3proxy.escaper.connection.establish") == 14
            && count("g3proxy.escaper.task.total") == 15
            && count("g3proxy.escaper.forbidden.ip_blocked") == 1)
            .then_some(())
    });

    // A reload in the middle: the new generation's counts add to the old one's.
    let output = group.ctl(&["reload"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for _ in 0..5 {
        assert_eq!(curl(&["-x", &proxy, &url]), "hello");
    }
    // (Ten requests, the tunnel, the refused one, five more.)
    wait_until(Duration::from_secs(10), "17 tasks counted", || {
        (statsd.total("g3proxy.server.task.total", &http) == 17).then_some(())
    });

    // A worker killed with a tunnel open: its gauge goes back to 0.
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"counted");
    let pid = group.worker_pids("current")[0];
    let stat_id = format!("stat_id:{pid}");
    let tagged = ["server:http", stat_id.as_str()];
    wait_until(Duration::from_secs(10), "the tunnel in the gauge", || {
        let alive = statsd.matching("g3proxy.server.task.alive", "g", &tagged);
        (alive.last().map(|(v, _)| *v) == Some(1)).then_some(())
    });
    kill(pid, Signal::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "the dead worker's gauge at 0",
        || {
            let alive = statsd.matching("g3proxy.server.task.alive", "g", &tagged);
            (alive.last().map(|(v, _)| *v) == Some(0)).then_some(())
        },
    );
}
