//! Scenario: `route_geoip` against an ip-locate service speaking g3proxy's protocol: a Python
//! program with PyPI's `msgpack` (not our encoder) on loopback UDP, locating loopback
//! addresses as if they were abroad. Each escaper is bound to its own loopback address, and
//! the origins answer with the address a request came from.
//! - a `networks` rule wins before any location is asked for;
//! - an AS number, a country (written alpha-3 in the config, alpha-2 by the service) and a
//!   continent each pick their escaper, in that order;
//! - an answer with keys as ids (g3's other form) reads the same;
//! - an address the service does not know goes to `default_next`, and so does one it
//!   places nowhere the rules name;
//! - a second request to a located address is answered from the cache, and so is one to
//!   another address of a network located before.

use std::time::Duration;

use g3proxy_tests::{Group, PythonPeer, SourceOrigin, bound_escaper, curl, wait_until};

const SERVICE: &str = r#"
import socket, msgpack
locations = {
    "127.0.0.11": {"network": "127.0.0.11/32", "as_number": 64500, "country": "US", "continent": "NA"},
    "127.0.0.12": {"network": "127.0.0.12/32", "country": "US", "continent": "NA", "ttl": 60},
    "127.0.0.13": {"network": "127.0.0.13/32", "country": "FR", "continent": "EU"},
    "127.0.0.15": {"network": "127.0.0.15/32", "country": "JP", "continent": "AS"},
    # Holds for 127.0.0.17 too, which the service does not list.
    "127.0.0.16": {"network": "127.0.0.16/31", "country": "FR", "continent": "EU"},
}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(4096)
    query = msgpack.unpackb(data, raw=False)
    ip = query.get("ip", query.get(1))
    print(ip, flush=True)
    found = locations.get(ip)
    if found is None:
        continue
    if ip == "127.0.0.13":
        # The same answer with g3's numeric keys.
        ids = {"network": 3, "country": 4, "continent": 5, "as_number": 6}
        answer = {1: ip}
        answer.update({ids[k]: v for k, v in found.items()})
    else:
        answer = dict(found, ip=ip)
    s.sendto(msgpack.packb(answer), peer)
"#;

struct Service(PythonPeer);

impl Service {
    fn start() -> Service {
        Service(PythonPeer::start(SERVICE, &[]))
    }

    fn asked(&self, ip: &str) -> usize {
        self.0
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == ip)
            .count()
    }
}

#[test]
fn the_service_locates_and_the_rules_pick_in_g3s_order() {
    let service = Service::start();
    let origins: Vec<SourceOrigin> = [
        "127.0.0.10",
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.13",
        "127.0.0.14",
        "127.0.0.15",
        "127.0.0.16",
        "127.0.0.17",
    ]
    .into_iter()
    .map(SourceOrigin::start)
    .collect();
    let text = format!(
        "escaper:\n{}{}{}{}{}  - name: geo\n    type: route_geoip\n    resolver: none\n    default_next: elsewhere\n    ip_locate_service: {{query_peer_addr: \"127.0.0.1:{}\", cache_request_timeout: 500ms}}\n    geo_rules:\n      - {{next: lan, networks: 127.0.0.10/32}}\n      - {{next: transit, as_numbers: 64500}}\n      - {{next: america, countries: [USA]}}\n      - {{next: europe, continents: EU}}\nserver:\n  - {{name: http, type: http_proxy, escaper: geo, listen: \"127.0.0.1:{{{{http_port}}}}\"}}\n",
        bound_escaper("lan", "127.0.0.2"),
        bound_escaper("transit", "127.0.0.3"),
        bound_escaper("america", "127.0.0.4"),
        bound_escaper("europe", "127.0.0.5"),
        bound_escaper("elsewhere", "127.0.0.6"),
        service.0.port,
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let proxy = format!("http://127.0.0.1:{}", group.port("http"));
    let through = |origin: &SourceOrigin| curl(&["-x", &proxy, &origin.url()]);

    // By network, with no question asked.
    assert_eq!(through(&origins[0]), "127.0.0.2");
    // AS number before country; country (USA in the config, US from the service);
    // continent, from an answer keyed by ids.
    assert_eq!(through(&origins[1]), "127.0.0.3");
    assert_eq!(through(&origins[2]), "127.0.0.4");
    assert_eq!(through(&origins[2]), "127.0.0.4");
    assert_eq!(through(&origins[3]), "127.0.0.5");
    // Unknown to the service, and located where no rule goes.
    assert_eq!(through(&origins[4]), "127.0.0.6");
    assert_eq!(through(&origins[5]), "127.0.0.6");
    // Located as part of a network: the other address of it is not asked about.
    assert_eq!(through(&origins[6]), "127.0.0.5");
    assert_eq!(through(&origins[7]), "127.0.0.5");

    wait_until(Duration::from_secs(10), "the service's log", || {
        (service.asked("127.0.0.15") == 1).then_some(())
    });
    assert_eq!(
        service.asked("127.0.0.10"),
        0,
        "a network rule asks nothing"
    );
    assert_eq!(
        service.asked("127.0.0.12"),
        1,
        "answered from the cache the second time"
    );
    assert_eq!(
        service.asked("127.0.0.17"),
        0,
        "located by the network of 127.0.0.16"
    );
}
