//! Stable replay of the fuzz corpus (`proto/fuzz/corpus/<target>/`), plus a deterministic
//! mutation run over it: byte flips, insertions, deletions and cuts of every saved input,
//! each checked with the same properties the fuzz targets check.

use std::path::Path;

use g3proxy_proto::checks;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 10] = [
    ("http1_request", checks::http1_request),
    ("http1_response", checks::http1_response),
    ("chunked", checks::chunked),
    ("socks5", checks::socks5),
    ("socks4", checks::socks4),
    ("proxy_protocol", checks::proxy_protocol),
    ("tls_hello", checks::tls_hello),
    ("frame", checks::frame),
    ("ldap", checks::ldap),
    ("msgpack", checks::msgpack),
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs
}

#[test]
fn corpus_replays_clean() {
    for (target, check) in TARGETS {
        for input in corpus(target) {
            check(&input);
            for cut in 0..input.len() {
                check(&input[..cut]);
            }
        }
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
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

#[test]
fn mutated_corpus_keeps_the_properties() {
    let interesting = b"\r\n:;, 0123456789abcdefABCDEF\x00\xff\x05[]/?#@";
    // MUTATION_ROUNDS=1000000 for a longer hunt; the seed makes any failure reproducible.
    let rounds: usize = std::env::var("MUTATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4_000);
    let seed: u64 = std::env::var("MUTATION_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed);
    for (target, check) in TARGETS {
        let seeds = corpus(target);
        for round in 0..rounds {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len() + 1);
                match rng.below(5) {
                    0 if at < input.len() => input[at] ^= 1 << rng.below(8),
                    1 => input.insert(at, interesting[rng.below(interesting.len())]),
                    2 if at < input.len() => {
                        input.remove(at);
                    }
                    3 => input.truncate(at),
                    _ => {
                        let end = (at + rng.below(8)).min(input.len());
                        let copy = input[at..end].to_vec();
                        input.splice(at..at, copy);
                    }
                }
            }
            check(&input);
        }
    }
}
