//! Picking: a cheap random index, to spread connections over bind addresses and ports, and
//! [`Picker`], which picks one entry of a weighted list (next-hop proxies, upstreams) by the
//! configured policy. Random here is good enough for load spreading, not for anything secret.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use g3proxy_shared::types::PickPolicy;

fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

pub fn random_index(len: usize) -> usize {
    (random_u64() as usize) % len.max(1)
}

pub struct Picker<T> {
    entries: Vec<T>,
    weights: Vec<f64>,
    /// Running sums of the weights, for weighted random.
    cumulative: Vec<f64>,
    policy: PickPolicy,
    /// Smooth weighted round robin (as nginx): each entry's current credit.
    credits: Mutex<Vec<f64>>,
}

impl<T> Picker<T> {
    /// `weighted` must not be empty; weights are positive (the config checks both).
    pub fn new(weighted: Vec<(T, f64)>, policy: PickPolicy) -> Picker<T> {
        let weights: Vec<f64> = weighted.iter().map(|(_, w)| *w).collect();
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        Picker {
            credits: Mutex::new(vec![0.0; weights.len()]),
            entries: weighted.into_iter().map(|(entry, _)| entry).collect(),
            weights,
            cumulative,
            policy,
        }
    }

    pub fn pick(&self) -> &T {
        &self.entries[self.pick_index()]
    }

    /// Every entry once, starting with the one the policy picks: the order to try them in
    /// when one fails.
    pub fn failover_order(&self) -> impl Iterator<Item = &T> {
        let start = self.pick_index();
        let len = self.entries.len();
        (0..len).map(move |i| &self.entries[(start + i) % len])
    }

    fn pick_index(&self) -> usize {
        let last = self.entries.len().saturating_sub(1);
        let index = match self.policy {
            PickPolicy::Random => {
                let total = self.cumulative.last().copied().unwrap_or_default();
                let point = (random_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                self.cumulative
                    .iter()
                    .position(|&sum| point < sum)
                    .unwrap_or(last)
            }
            PickPolicy::RoundRobin => {
                // Every entry earns its weight; the richest is picked and pays the total back.
                // Over a cycle each is picked in proportion to its weight, spread out.
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
        };
        index.min(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_follows_the_weights() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 2.0)], PickPolicy::RoundRobin);
        let picked: Vec<&str> = (0..6).map(|_| *picker.pick()).collect();
        assert_eq!(picked, ["b", "a", "b", "b", "a", "b"]);
        // A tiny weight beside a huge one still gets its turn.
        let picker = Picker::new(
            vec![("big", 2000.0), ("a", 1.0), ("b", 1.5)],
            PickPolicy::RoundRobin,
        );
        let mut counts = std::collections::HashMap::new();
        for _ in 0..2002 * 2 + 1 {
            *counts.entry(*picker.pick()).or_insert(0) += 1;
        }
        assert_eq!(counts["a"], 2);
        assert_eq!(counts["b"], 3);
    }

    #[test]
    fn random_follows_the_weights_loosely() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 3.0)], PickPolicy::Random);
        let b = (0..4000).filter(|_| *picker.pick() == "b").count();
        assert!((2600..3400).contains(&b), "{b} of 4000");
    }
}
