//! Scenario: a generation of two worker processes (`worker.thread_number: 2`) pinned to CPUs
//! (`sched_affinity: true`), where the SOCKS5 server listens with one SO_REUSEPORT socket per
//! worker (`listen_in_worker`) and the HTTP server shares one socket.

use std::collections::BTreeSet;

use g3proxy_tests::group::socket_inodes;
use g3proxy_tests::{Echo, Group, open_socks5_tunnel, roundtrip};

fn allowed_cpus(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn workers_are_pinned_and_listen_in_worker_gives_each_its_own_socket() {
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("workers");
    let supervisor = group.start();
    let workers = group.first_generation_workers();
    assert_eq!(workers.len(), 2);
    let cpus = std::thread::available_parallelism().unwrap().get();
    for worker in &workers {
        let index = worker["index"].as_u64().unwrap() as usize;
        let pid = worker["pid"].as_u64().unwrap() as u32;
        assert_eq!(
            allowed_cpus(pid),
            (index % cpus).to_string(),
            "worker {index}"
        );
    }
    // Listening sockets the supervisor holds, and which of them each worker holds.
    let supervisor_sockets = socket_inodes(supervisor);
    let held: Vec<BTreeSet<u64>> = workers
        .iter()
        .map(|w| {
            socket_inodes(w["pid"].as_u64().unwrap() as u32)
                .intersection(&supervisor_sockets)
                .copied()
                .collect()
        })
        .collect();
    let shared: BTreeSet<u64> = held[0].intersection(&held[1]).copied().collect();
    assert_eq!(
        shared.len(),
        1,
        "only the http listener is shared: {held:?}"
    );
    assert_eq!(
        held[0].len(),
        2,
        "worker 0 holds the shared socket and its own: {held:?}"
    );
    assert_eq!(
        held[1].len(),
        2,
        "worker 1 holds the shared socket and its own: {held:?}"
    );
    // Both per-worker sockets accept: the kernel spreads connections over them.
    let mut tunnels: Vec<_> = (0..16)
        .map(|_| open_socks5_tunnel(group.socks_proxy(), echo.addr))
        .collect();
    for tunnel in &mut tunnels {
        roundtrip(tunnel, b"spread");
    }
    let fleet = group.fleet();
    let busy = fleet["generations"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["alive_tasks"].as_u64().unwrap() > 0)
        .count();
    assert_eq!(busy, 2, "connections reach both workers: {fleet}");
}
