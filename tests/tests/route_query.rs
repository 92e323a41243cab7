//! Scenario: `route_query` against an agent speaking g3proxy's protocol: a Python program
//! with PyPI's `msgpack` (not our encoder) on loopback UDP, answering by target host. Each
//! escaper it may name is bound to its own loopback address, and the origins answer with the
//! address a request came from.
//! - an answer names the escaper; a second request to the host is answered from the cache
//!   (the agent is asked once);
//! - names the config does not allow are ignored, weights are read;
//! - no answer in time, or only names not allowed: the fallback;
//! - the query carries the user (none here: empty) and, with `query_pass_client_ip`, the
//!   client's address.

use std::time::Duration;

use g3proxy_tests::{Group, PythonPeer, SourceOrigin, bound_escaper, curl, wait_until};

const AGENT: &str = r#"
import socket, sys, msgpack
answers = {
    "127.0.0.1": {"nodes": ["two"], "ttl": 60},
    "127.0.0.7": {"nodes": [{"name": "three", "weight": 2}, "nowhere"], "ttl": 60},
    "127.0.0.9": {"nodes": "not_allowed", "ttl": 60},
}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(4096)
    query = msgpack.unpackb(data, raw=False)
    print(query["host"], repr(query["user"]), query.get("client_ip"), len(query["id"]), flush=True)
    answer = answers.get(query["host"])
    if answer is not None:
        s.sendto(msgpack.packb(dict(answer, id=query["id"]), use_bin_type=True), peer)
"#;

struct Agent(PythonPeer);

impl Agent {
    fn start() -> Agent {
        Agent(PythonPeer::start(AGENT, &[]))
    }

    fn queries_for(&self, host: &str) -> Vec<String> {
        let heard = self.0.lines.lock().unwrap();
        heard
            .iter()
            .filter(|l| l.split(' ').next() == Some(host))
            .cloned()
            .collect()
    }
}

#[test]
fn an_agent_names_the_escaper_and_the_fallback_covers_for_it() {
    let agent = Agent::start();
    let origins: Vec<SourceOrigin> = ["127.0.0.1", "127.0.0.7", "127.0.0.8", "127.0.0.9"]
        .into_iter()
        .map(SourceOrigin::start)
        .collect();
    let text = format!(
        "escaper:\n{}{}{}  - name: ask\n    type: route_query\n    query_allowed_next: [two, three]\n    fallback_node: fallback\n    query_peer_addr: 127.0.0.1:{}\n    query_pass_client_ip: true\n    cache_request_timeout: 500ms\nserver:\n  - {{name: http, type: http_proxy, escaper: ask, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n",
        bound_escaper("two", "127.0.0.2"),
        bound_escaper("three", "127.0.0.3"),
        bound_escaper("fallback", "127.0.0.4"),
        agent.0.port,
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let through = |origin: &SourceOrigin| curl(&["-x", &proxy, &origin.url()]);

    assert_eq!(through(&origins[0]), "127.0.0.2");
    assert_eq!(through(&origins[0]), "127.0.0.2");
    assert_eq!(through(&origins[1]), "127.0.0.3");
    // No answer, and an answer with no allowed escaper: the fallback.
    assert_eq!(through(&origins[2]), "127.0.0.4");
    assert_eq!(through(&origins[3]), "127.0.0.4");

    wait_until(Duration::from_secs(10), "the agent's log", || {
        (agent.queries_for("127.0.0.9").len() == 1).then_some(())
    });
    let asked = agent.queries_for("127.0.0.1");
    assert_eq!(
        asked.len(),
        1,
        "answered from the cache the second time: {asked:?}"
    );
    // No user on this proxy; the client's address passed; a 16-byte id.
    assert_eq!(asked[0], "127.0.0.1 '' 127.0.0.1 16");
}
