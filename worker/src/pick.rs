//! Picking: a cheap random index, to spread connections over bind addresses and ports, and
//! [`Picker`], which picks one entry of a weighted list (next-hop proxies, upstreams) by the
//! configured policy, with the order to try the others in when it fails. The hashing
//! policies map a key (the client and server addresses, for the stream servers) to the same
//! entry in every worker and generation of the same list: their hash is ours (FNV-1a), not a
//! per-process one. Random here is good enough for load spreading, not for anything secret.

use std::fmt::Display;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use g3proxy_shared::types::PickPolicy;

fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

pub fn random_index(len: usize) -> usize {
    (random_u64() as usize) % len.max(1)
}

/// FNV-1a over `parts`: stable across processes, builds and machines.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV mixes its last bytes poorly into the high bits; finish as splitmix64 does.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Points per unit of weight on the ketama ring (nginx's and g3's figure), and the most a
/// ring has.
const KETAMA_POINTS: u32 = 160;
const KETAMA_MAX_POINTS: u32 = 1 << 20;

pub struct Picker<T> {
    entries: Vec<T>,
    weights: Vec<f64>,
    /// Running sums of the weights, for weighted random.
    cumulative: Vec<f64>,
    policy: PickPolicy,
    /// Smooth weighted round robin (as nginx): each entry's current credit.
    credits: Mutex<Vec<f64>>,
    /// Each entry as it prints, which the hashing policies hash.
    names: Vec<String>,
    /// Ketama: (point, entry), sorted by point.
    ring: Vec<(u64, usize)>,
}

impl<T: Display> Picker<T> {
    /// `weighted` must not be empty; weights are positive (the config checks both). Serial
    /// takes the heaviest first, in the configured order among equals.
    pub fn new(mut weighted: Vec<(T, f64)>, policy: PickPolicy) -> Picker<T> {
        if policy == PickPolicy::Serial {
            weighted.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        let weights: Vec<f64> = weighted.iter().map(|(_, w)| *w).collect();
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        let names: Vec<String> = weighted
            .iter()
            .map(|(entry, _)| entry.to_string())
            .collect();
        let mut ring = Vec::new();
        if policy == PickPolicy::Ketama {
            // Points in proportion to the weights relative to the lightest entry, the whole
            // ring at most KETAMA_MAX_POINTS (weights go up to a million).
            let lightest = weights.iter().copied().fold(f64::INFINITY, f64::min);
            let total: f64 = weights.iter().map(|w| w / lightest).sum();
            let per_unit = (f64::from(KETAMA_MAX_POINTS) / total).min(f64::from(KETAMA_POINTS));
            for (index, (name, weight)) in names.iter().zip(&weights).enumerate() {
                let points = ((weight / lightest * per_unit).round() as u32).max(1);
                for point in 0..points {
                    let hash = stable_hash(&[name.as_bytes(), &point.to_le_bytes()]);
                    ring.push((hash, index));
                }
            }
            ring.sort_unstable();
            ring.dedup_by_key(|(hash, _)| *hash);
        }
        Picker {
            credits: Mutex::new(vec![0.0; weights.len()]),
            entries: weighted.into_iter().map(|(entry, _)| entry).collect(),
            weights,
            cumulative,
            policy,
            names,
            ring,
        }
    }
}

impl<T> Picker<T> {
    /// The entry for `key` (used by the hashing policies only).
    pub fn pick(&self, key: &[u8]) -> &T {
        let start = self.failover_indices(key).next().unwrap_or(0);
        &self.entries[start]
    }

    /// Every entry once, starting with the one the policy picks for `key`: the order to try
    /// them in when one fails.
    pub fn failover_order(&self, key: &[u8]) -> impl Iterator<Item = &T> {
        self.failover_indices(key).map(|i| &self.entries[i])
    }

    fn failover_indices(&self, key: &[u8]) -> std::vec::IntoIter<usize> {
        let len = self.entries.len();
        let order: Vec<usize> = match self.policy {
            PickPolicy::Random => rotated(self.weighted_random(), len),
            PickPolicy::Serial => (0..len).collect(),
            PickPolicy::RoundRobin => rotated(self.smooth_round_robin(), len),
            PickPolicy::Ketama => self.ketama(key),
            PickPolicy::Rendezvous => self.rendezvous(key),
            PickPolicy::JumpHash => rotated(jump_hash(stable_hash(&[key]), len), len),
        };
        order.into_iter()
    }

    fn weighted_random(&self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or_default();
        let point = (random_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .iter()
            .position(|&sum| point < sum)
            .unwrap_or(self.entries.len().saturating_sub(1))
    }

    /// Every entry earns its weight; the richest is picked and pays the total back. Over a
    /// cycle each is picked in proportion to its weight, spread out.
    fn smooth_round_robin(&self) -> usize {
        let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        let total: f64 = self.weights.iter().sum();
        let mut best = 0;
        for (i, weight) in self.weights.iter().enumerate() {
            credits[i] += weight;
            if credits[i] > credits[best] {
                best = i;
            }
        }
        credits[best] -= total;
        best
    }

    /// The first point at or after the key's hash, then the next distinct entries round
    /// the ring.
    fn ketama(&self, key: &[u8]) -> Vec<usize> {
        let hash = stable_hash(&[key]);
        let start = self.ring.partition_point(|(point, _)| *point < hash);
        let mut order = Vec::with_capacity(self.entries.len());
        for i in 0..self.ring.len() {
            let (_, entry) = self.ring[(start + i) % self.ring.len()];
            if !order.contains(&entry) {
                order.push(entry);
                if order.len() == self.entries.len() {
                    break;
                }
            }
        }
        order
    }

    /// Each entry scores `-weight / ln(u)` for a uniform `u` drawn from the key and its
    /// name: the highest wins, in proportion to the weights; the rest follow by score.
    fn rendezvous(&self, key: &[u8]) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .names
            .iter()
            .zip(&self.weights)
            .enumerate()
            .map(|(i, (name, weight))| {
                let hash = stable_hash(&[key, name.as_bytes()]);
                // In (0, 1): never 0, whose logarithm is no number.
                let uniform = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-weight / uniform.ln(), i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, i)| i).collect()
    }
}

/// `0..len` starting at `start`.
fn rotated(start: usize, len: usize) -> Vec<usize> {
    (0..len).map(|i| (start + i) % len.max(1)).collect()
}

/// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014).
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (0i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_follows_the_weights() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 2.0)], PickPolicy::RoundRobin);
        let picked: Vec<&str> = (0..6).map(|_| *picker.pick(b"")).collect();
        assert_eq!(picked, ["b", "a", "b", "b", "a", "b"]);
        // A tiny weight beside a huge one still gets its turn.
        let picker = Picker::new(
            vec![("big", 2000.0), ("a", 1.0), ("b", 1.5)],
            PickPolicy::RoundRobin,
        );
        let mut counts = std::collections::HashMap::new();
        for _ in 0..2002 * 2 + 1 {
            *counts.entry(*picker.pick(b"")).or_insert(0) += 1;
        }
        assert_eq!(counts["a"], 2);
        assert_eq!(counts["b"], 3);
    }

    #[test]
    fn random_follows_the_weights_loosely() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 3.0)], PickPolicy::Random);
        let b = (0..4000).filter(|_| *picker.pick(b"") == "b").count();
        assert!((2600..3400).contains(&b), "{b} of 4000");
    }

    #[test]
    fn serial_takes_the_heaviest_then_the_rest_in_order() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 2.0), ("c", 1.0)], PickPolicy::Serial);
        let order: Vec<&str> = picker.failover_order(b"").copied().collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn a_huge_weight_makes_a_bounded_ring() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 1e6)], PickPolicy::Ketama);
        assert!(picker.ring.len() <= KETAMA_MAX_POINTS as usize);
        assert!(picker.ring.iter().any(|(_, entry)| *entry == 0));
    }

    /// The hashing policies: the same key the same entry, keys spread in proportion to the
    /// weights (jump hash evenly), and a removed entry moves only its own keys.
    #[test]
    fn hashing_policies_are_consistent() {
        let keys: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for policy in [
            PickPolicy::Ketama,
            PickPolicy::Rendezvous,
            PickPolicy::JumpHash,
        ] {
            let weighted = vec![("a", 1.0), ("b", 1.0), ("c", 2.0)];
            let picker = Picker::new(weighted.clone(), policy);
            let picked: Vec<&str> = keys.iter().map(|k| *picker.pick(k)).collect();
            let again: Vec<&str> = keys.iter().map(|k| *picker.pick(k)).collect();
            assert_eq!(picked, again, "{policy:?}");
            let c = picked.iter().filter(|p| **p == "c").count();
            let want = if policy == PickPolicy::JumpHash {
                1000
            } else {
                1500
            };
            assert!(c.abs_diff(want) < 250, "{policy:?}: c got {c} of 3000");
            let order: Vec<&str> = picker.failover_order(&keys[0]).copied().collect();
            assert_eq!(order.len(), 3, "{policy:?}");
            assert_eq!(order[0], picked[0], "{policy:?}");
            if policy == PickPolicy::JumpHash {
                // Jump hash moves keys when the last bucket goes, not an arbitrary one.
                continue;
            }
            let fewer = Picker::new(vec![("a", 1.0), ("c", 2.0)], policy);
            for (key, before) in keys.iter().zip(&picked) {
                if *before != "b" {
                    assert_eq!(fewer.pick(key), before, "{policy:?}");
                }
            }
        }
    }
}
