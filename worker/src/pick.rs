//! Picking: a cheap random index, to spread connections over bind addresses and ports, and
//! [`Picker`], which picks one entry of a weighted list (next-hop proxies, upstreams) by the
//! configured policy. Random here is good enough for load spreading, not for anything secret.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use g3proxy_shared::types::PickPolicy;

fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

pub fn random_index(len: usize) -> usize {
    (random_u64() as usize) % len.max(1)
}

/// Round robin repeats an entry in proportion to its weight, in at most this many turns.
const MAX_TURNS: usize = 1024;

pub struct Picker<T> {
    entries: Vec<T>,
    /// Running sums of the weights, for weighted random.
    cumulative: Vec<f64>,
    policy: PickPolicy,
    /// Round robin: entry indexes in turn order.
    turns: Vec<usize>,
    next_turn: AtomicUsize,
}

impl<T> Picker<T> {
    /// `weighted` must not be empty; weights are positive (the config checks both).
    pub fn new(weighted: Vec<(T, f64)>, policy: PickPolicy) -> Picker<T> {
        let smallest = weighted
            .iter()
            .map(|(_, w)| *w)
            .fold(f64::INFINITY, f64::min);
        let mut cumulative = Vec::with_capacity(weighted.len());
        let mut turns = Vec::new();
        let mut total = 0.0;
        for (index, (_, weight)) in weighted.iter().enumerate() {
            total += weight;
            cumulative.push(total);
            let repeats = ((weight / smallest).round() as usize).clamp(1, MAX_TURNS);
            turns.extend(std::iter::repeat_n(index, repeats));
        }
        turns.truncate(MAX_TURNS.max(weighted.len()));
        Picker {
            entries: weighted.into_iter().map(|(entry, _)| entry).collect(),
            cumulative,
            policy,
            turns,
            next_turn: AtomicUsize::new(0),
        }
    }

    pub fn pick(&self) -> &T {
        let index = match self.policy {
            PickPolicy::Random => {
                let total = self.cumulative.last().copied().unwrap_or_default();
                let point = (random_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                self.cumulative
                    .iter()
                    .position(|&sum| point < sum)
                    .unwrap_or(self.entries.len().saturating_sub(1))
            }
            PickPolicy::RoundRobin => {
                let turn = self.next_turn.fetch_add(1, Ordering::Relaxed);
                self.turns
                    .get(turn % self.turns.len().max(1))
                    .copied()
                    .unwrap_or(0)
            }
        };
        &self.entries[index.min(self.entries.len().saturating_sub(1))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_follows_the_weights() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 2.0)], PickPolicy::RoundRobin);
        let picked: Vec<&str> = (0..6).map(|_| *picker.pick()).collect();
        assert_eq!(picked, ["a", "b", "b", "a", "b", "b"]);
    }

    #[test]
    fn random_follows_the_weights_loosely() {
        let picker = Picker::new(vec![("a", 1.0), ("b", 3.0)], PickPolicy::Random);
        let b = (0..4000).filter(|_| *picker.pick() == "b").count();
        assert!((2600..3400).contains(&b), "{b} of 4000");
    }
}
