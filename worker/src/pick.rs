//! A cheap random index, to spread connections over bind addresses and ports: good enough
//! for load spreading, not for anything secret.

pub fn random_index(len: usize) -> usize {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::Instant::now()) as usize) % len.max(1)
}
