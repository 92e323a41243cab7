//! Scenario: a worker of the serving generation is killed. The supervisor starts a
//! replacement with the same sockets, its sibling keeps serving (an open tunnel through it
//! keeps flowing), and new requests succeed.

use std::time::Duration;

use g3proxy_tests::group::{kill, process_alive};
use g3proxy_tests::{Echo, Group, Origin, http_get, open_connect_tunnel, roundtrip, wait_until};
use nix::sys::signal::Signal;

#[test]
fn killed_worker_is_replaced_and_its_sibling_is_untouched() {
    let origin = Origin::start("127.0.0.1");
    let echo = Echo::start("127.0.0.1");
    let mut group = Group::new("workers");
    group.start();
    let mut tunnel = open_connect_tunnel(group.http_proxy(), echo.addr);
    roundtrip(&mut tunnel, b"hello");
    // Find the worker that carries the tunnel; kill the other one.
    let workers = group.first_generation_workers();
    assert_eq!(workers.len(), 2);
    let victim = workers
        .iter()
        .find(|w| w["alive_tasks"] == 0)
        .expect("one idle worker")["pid"]
        .as_u64()
        .unwrap() as u32;
    let victim_index = workers.iter().find(|w| w["pid"] == victim).unwrap()["index"].clone();
    kill(victim, Signal::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "the killed worker to be gone",
        || (!process_alive(victim)).then_some(()),
    );
    roundtrip(&mut tunnel, b"the sibling still serves");

    let replacement = wait_until(
        Duration::from_secs(30),
        "a replacement worker to serve",
        || {
            let fleet = group.fleet();
            let worker = fleet["generations"][0]["workers"]
                .as_array()?
                .iter()
                .find(|w| w["index"] == victim_index)?
                .clone();
            let pid = worker["pid"].as_u64()? as u32;
            (pid != victim && worker["state"] == "serving").then_some(pid)
        },
    );
    assert!(process_alive(replacement));
    for _ in 0..20 {
        assert_eq!(
            http_get(group.http_proxy(), origin.addr).unwrap().1,
            b"hello"
        );
    }
    roundtrip(&mut tunnel, b"and still");
}
