//! A worker's side of the group-wide user counters (`g3proxy_shared::user_limits`): the
//! mapped region and this worker's column in it, and the guard a live task holds.

use std::sync::Arc;

use g3proxy_shared::types::RateQuota;
use g3proxy_shared::user_limits::{self, Bucket, FlowRate, UserLimits};

pub struct GroupLimits {
    region: UserLimits,
    column: usize,
}

impl GroupLimits {
    /// The group's region and a column of our own; `None` (logged) when there is none.
    pub fn open(control_dir: &std::path::Path, group: &str) -> Option<Arc<GroupLimits>> {
        let path = user_limits::path(control_dir, group);
        let region = match UserLimits::open(&path) {
            Ok(region) => region,
            Err(error) => {
                tracing::error!(
                    "{}: {error}; users' request_alive_max and rate limits are not enforced by this worker",
                    path.display()
                );
                return None;
            }
        };
        let Some(column) = region.claim_column(std::process::id()) else {
            tracing::error!(
                "{}: no free worker column ({} workers alive?); users' request_alive_max and rate limits are not enforced by this worker",
                path.display(),
                user_limits::COLUMNS
            );
            return None;
        };
        Some(Arc::new(GroupLimits { region, column }))
    }

    /// The slot of a user of `user_group` (its key); `None` (logged) when the table is full.
    pub fn slot(&self, key: u64, user_group: &str, user: &str) -> Option<usize> {
        let slot = self.region.slot(key);
        if slot.is_none() {
            tracing::error!(
                "user group {user_group}: no room to count user {user:?} group-wide; its request_alive_max, rate limits and blocks from newer generations do not hold"
            );
        }
        slot
    }

    /// Tells every process of the group whether this config blocks the user, so that older
    /// generations end its tasks too. An unblocked user without a slot needs none.
    pub fn publish_block(&self, key: u64, user_group: &str, user: &str, blocked: bool) {
        let slot = match blocked {
            true => self.slot(key, user_group, user),
            false => self.region.find(key),
        };
        if let Some(slot) = slot {
            self.region.set_blocked(slot, blocked);
        }
    }

    pub fn block_epoch(&self) -> u64 {
        self.region.block_epoch()
    }

    /// Whether a newer config of the group blocks the user of `key`.
    pub fn blocked_by_group(&self, key: u64) -> bool {
        self.region
            .find(key)
            .is_some_and(|slot| self.region.is_blocked(slot))
    }

    pub fn take(&self, slot: usize, bucket: Bucket, quota: &RateQuota) -> bool {
        self.region.take(slot, bucket, quota)
    }

    /// A live task of the user in `slot`, given back when the guard drops; `None` when the
    /// user already has `max` over the group.
    pub fn acquire(self: &Arc<Self>, slot: usize, max: u32) -> Option<AliveGuard> {
        self.region
            .acquire_alive(slot, self.column, max)
            .then(|| AliveGuard {
                limits: self.clone(),
                slot,
            })
    }
}

/// A user's bucket of bytes or packets of one direction, shared by the whole group.
#[derive(Clone)]
pub struct GroupBucket {
    limits: Arc<GroupLimits>,
    slot: usize,
    bucket: Bucket,
    rate: FlowRate,
}

impl std::fmt::Debug for GroupBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupBucket({:?})", self.bucket)
    }
}

impl GroupBucket {
    /// `units` per `interval` (bursts up to `burst`) of `bucket`; `None` for 0 units (no
    /// limit on that measure).
    pub fn new(
        limits: &Arc<GroupLimits>,
        slot: usize,
        bucket: Bucket,
        (interval, units, burst): (std::time::Duration, u64, u64),
    ) -> Option<GroupBucket> {
        (units > 0).then(|| GroupBucket {
            limits: limits.clone(),
            slot,
            bucket,
            rate: FlowRate::new(interval, units, burst),
        })
    }

    /// What an empty bucket lets through at once.
    pub fn capacity(&self) -> u64 {
        self.rate.capacity()
    }

    pub fn allowance(&self) -> u64 {
        self.limits
            .region
            .allowance(self.slot, self.bucket, &self.rate)
    }

    pub fn wait_for(&self, bytes: u64) -> std::time::Duration {
        self.limits
            .region
            .wait_for(self.slot, self.bucket, &self.rate, bytes)
    }

    pub fn consume(&self, bytes: u64) {
        self.limits
            .region
            .consume(self.slot, self.bucket, &self.rate, bytes);
    }
}

/// One live task of a user with `request_alive_max`.
pub struct AliveGuard {
    limits: Arc<GroupLimits>,
    slot: usize,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.limits
            .region
            .release_alive(self.slot, self.limits.column);
    }
}
