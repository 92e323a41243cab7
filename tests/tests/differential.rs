//! Differential check of HTTP/1 framing against two independent parsers that origins use:
//! h11 (Python, Debian's `python3-h11`) and llhttp (Node.js's HTTP server, strict mode). For
//! every case (hand-written smuggling probes and a deterministic mutation run over them) we
//! decide as the proxy does: refuse, or forward with a body framing. A forwarded head is
//! written as the proxy writes it, followed by the body as we framed it and a second request;
//! each origin parser must then either refuse the stream or read exactly our body and then
//! the second request. Anything else is a desync between proxy and origin: request
//! smuggling. Where we accept a client head that h11 refuses is printed for review (we are
//! the stricter one on framing; leniency elsewhere is allowed), not failed.
//!
//! The disagreements left, each deliberate:
//! - Transfer codings before `chunked` (`gzip, chunked`): RFC 9112 allows them and we pass
//!   them on; h11 and llhttp refuse such a request as origins, which is their right, and a
//!   refusal is no desync.
//! - Methods outside llhttp's list (`OST`, `PO5S`): any token is a method (RFC 9110 9.1);
//!   Node refuses unknown ones.
//! - A missing `Host` with an absolute-form target: a proxy takes the target from the URI
//!   (RFC 9112 3.2.2) and writes `Host` itself.
//! - One empty line before the request line: RFC 9112 2.2 lets a server ignore it.
//!
//! Found and fixed by this test: `chunked` applied twice or followed by another coding was
//! accepted; it is refused now.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use g3proxy_proto::Parsed;
use g3proxy_proto::http1::{self, BodyFraming, RequestTarget};

/// Client heads that probe framing, `Host` and header syntax.
const PROBES: &[&str] = &[
    "GET http://o/ HTTP/1.1\r\nHost: o\r\n\r\n",
    "GET http://o/ HTTP/1.0\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 05\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5 \r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length:  5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5,5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: \r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\n Content-Length: 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nX: y\r\n Content-Length: 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding:  chunked \r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: x-chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n",
    "POST http://o/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST http://o/p HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST http://o/p HTTP/1.1\r\nConnection: host, close\r\nHost: evil\r\nContent-Length: 2\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nHost: o\r\nHost: p\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nHost: evil\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nHost:\r\n\r\n",
    "GET http://user@o/ HTTP/1.1\r\n\r\n",
    "GET http://o:80/x#frag HTTP/1.1\r\n\r\n",
    "GET http://o/a%20b?c=d HTTP/1.1\r\n\r\n",
    "GET http://[::1]:8080/ HTTP/1.1\r\n\r\n",
    "GET https://o/ HTTP/1.1\r\n\r\n",
    "GET http://o HTTP/1.1\r\n\r\n",
    "GET http://o/ HTTP/1.1\nHost: o\n\n",
    "GET http://o/ HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nX\x01Y: 1\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\n: empty\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    "POST http://o/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    "get http://o/ HTTP/1.1\r\n\r\n",
    "G\x01T http://o/ HTTP/1.1\r\n\r\n",
    "GET http://o/ HTTP/1.2\r\n\r\n",
    "GET http://o/ HTTP/2.0\r\n\r\n",
    "GET  http://o/ HTTP/1.1\r\n\r\n",
    "GET http://o/ HTTP/1.1 \r\n\r\n",
    "GET http://o/\x7f HTTP/1.1\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    "GET http://o/ HTTP/1.1\r\nTE: trailers\r\nKeep-Alive: 5\r\nProxy-Connection: close\r\n\r\n",
    "DELETE http://o/x HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: o\r\n\r\n",
];

/// Bytes a mutation puts in: the separators and digits framing decisions hinge on.
const INTERESTING: &[u8] = b":, \t\r\n0159-+;=\x00\x0b\x7f\x80\xffaAcCkK";

/// xorshift64*: deterministic, so a finding reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutations(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..count)
        .map(|_| {
            let mut input = PROBES[rng.below(PROBES.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(input.len());
                let byte = INTERESTING[rng.below(INTERESTING.len())];
                match rng.below(3) {
                    0 => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            input
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The proxy's decision on `input`, as a JSON case line for the checkers.
fn case(id: usize, input: &[u8]) -> serde_json::Value {
    let mut line = serde_json::json!({"id": id, "input": hex(input), "ours": "reject"});
    let Ok(Parsed::Complete(head, _)) = http1::parse_request(input) else {
        return line;
    };
    let (
        Ok(RequestTarget::Forward {
            upstream,
            path,
            tls,
        }),
        Ok(framing),
    ) = (head.proxy_target(), head.body_framing())
    else {
        return line;
    };
    let (ours, body): (String, Vec<u8>) = match framing {
        BodyFraming::Empty => ("empty".into(), Vec::new()),
        BodyFraming::Length(n) if n <= 64 => (format!("length {n}"), vec![b'x'; n as usize]),
        // A length we would relay but that this check does not send.
        BodyFraming::Length(_) => return line,
        BodyFraming::Chunked => ("chunked".into(), b"hello".to_vec()),
        BodyFraming::UntilClose => return line,
    };
    let outgoing = http1::Outgoing {
        path: &path,
        upstream: &upstream,
        tls,
        absolute_form: false,
        framing,
        keep_alive: true,
        extra_headers: b"",
        host: None,
        consumed_header: None,
    };
    let mut output = Vec::new();
    http1::write_request_head(&head.without_expect(), &outgoing, &mut output);
    if framing == BodyFraming::Chunked {
        output.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    } else {
        output.extend_from_slice(&body);
    }
    output.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: o\r\n\r\n");
    line["ours"] = ours.into();
    line["path"] = path.into();
    line["body"] = hex(&body).into();
    line["keep_alive"] = (head.minor_version == 1).into();
    line["output"] = hex(&output).into();
    line
}

fn run_checker(program: &str, script: &str, cases: &Path) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("differential")
        .join(script);
    let output = Command::new(program)
        .arg(&script)
        .arg(cases)
        .output()
        .unwrap_or_else(|e| panic!("{program} {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{program} {} failed (ci/setup.sh installs python3-h11 and nodejs): {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("checker output line"))
        .collect()
}

#[test]
fn origins_frame_what_we_forward_as_we_do() {
    let mut inputs: Vec<Vec<u8>> = PROBES.iter().map(|p| p.as_bytes().to_vec()).collect();
    inputs.extend(mutations(3000));
    let cases: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(id, input)| case(id, input))
        .collect();
    let forwarded = cases.iter().filter(|c| c["ours"] != "reject").count();
    let dir = std::env::temp_dir().join(format!("g3proxy-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("cases.jsonl");
    let text: String = cases.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(&path, text).expect("write cases");

    let mut failures = Vec::new();
    let mut lenient = BTreeMap::new();
    for (program, script) in [("python3", "h11_check.py"), ("node", "llhttp_check.js")] {
        let results = run_checker(program, script, &path);
        assert_eq!(results.len(), cases.len(), "{script} answered every case");
        let mut rejected = 0;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for result in &results {
            let id = result["id"].as_u64().expect("id") as usize;
            match result["verdict"].as_str() {
                Some("ok") => {}
                Some("rejected") => {
                    rejected += 1;
                    let reason = result["detail"].as_str().unwrap_or("-");
                    let reason: String = reason.chars().take(60).collect();
                    *reasons.entry(reason).or_default() += 1;
                }
                _ => failures.push(format!(
                    "{script}: case {id} {:?} (ours: {}): {}",
                    String::from_utf8_lossy(&inputs[id]),
                    cases[id]["ours"],
                    result["detail"]
                )),
            }
            if let Some(raw) = result["raw"].as_str()
                && raw != "accepted"
                && cases[id]["ours"] != "reject"
            {
                lenient.insert(id, raw.to_string());
            }
        }
        println!(
            "{script}: {} cases, {forwarded} forwarded by us, {rejected} of those refused by the origin parser: {reasons:?}",
            cases.len()
        );
    }
    for (id, raw) in lenient.iter().take(20) {
        println!(
            "accepted by us, refused by h11 as a client head: {:?}: {raw}",
            String::from_utf8_lossy(&inputs[id.to_owned()])
        );
    }
    println!(
        "{} client heads accepted by us and refused by h11",
        lenient.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} desyncs between proxy and origin:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
