//! A per-direction speed limit in g3's form: so many bytes per time slice (2^shift ms). The
//! relay asks how much it may read before each read and sleeps to the next slice when the
//! slice is spent, so a limited direction never reads more than it may write.

use std::time::Duration;

use g3proxy_shared::types::SpeedLimit;

use crate::auth::GroupBucket;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Limiter {
    per_slice: u64,
    slice: Duration,
    slice_start: Instant,
    used: u64,
    /// The user's bytes over the whole group (`tcp_all_*_speed_limit`), on top. Boxed: every
    /// idle tunnel carries this field, and few users have such a limit.
    group: Option<Box<GroupBucket>>,
}

/// Reads smaller than this wait for the group's bucket to fill rather than trickle.
const GROUP_MIN_CHUNK: u64 = 4096;

impl Limiter {
    /// One direction of `limit`; `None` when that direction is unlimited.
    pub fn new(bytes_per_slice: u64, limit: &SpeedLimit) -> Option<Limiter> {
        (bytes_per_slice > 0).then(|| Limiter {
            per_slice: bytes_per_slice,
            slice: limit.slice(),
            slice_start: Instant::now(),
            used: 0,
            group: None,
        })
    }

    /// `local` (a socket's limit) with the user's group-wide bucket on top.
    pub fn with_group(local: Option<Limiter>, group: Option<GroupBucket>) -> Option<Limiter> {
        let Some(group) = group else {
            return local;
        };
        let mut limiter = local.unwrap_or(Limiter {
            per_slice: u64::MAX,
            slice: Duration::from_secs(1),
            slice_start: Instant::now(),
            used: 0,
            group: None,
        });
        limiter.group = Some(Box::new(group));
        Some(limiter)
    }

    /// Bytes that may go now; 0 means wait for [`Limiter::next_try`].
    pub fn allowance(&mut self, now: Instant) -> u64 {
        if now >= self.slice_start + self.slice {
            // Slices stay aligned to the first one, so idle time earns no burst.
            let elapsed = now.duration_since(self.slice_start).as_nanos();
            let slices = elapsed / self.slice.as_nanos().max(1);
            self.slice_start += self.slice * slices.min(u32::MAX as u128) as u32;
            self.used = 0;
        }
        let local = self.per_slice.saturating_sub(self.used);
        match &self.group {
            Some(group) if local > 0 => {
                let shared = group.allowance();
                if shared < GROUP_MIN_CHUNK.min(group.capacity()) {
                    0
                } else {
                    local.min(shared)
                }
            }
            _ => local,
        }
    }

    /// When to ask again after an allowance of 0: the next slice, or when the group's bucket
    /// has room for a chunk.
    pub fn next_try(&self) -> Instant {
        match &self.group {
            Some(group) if self.used < self.per_slice => {
                Instant::now() + group.wait_for(GROUP_MIN_CHUNK.min(group.capacity()))
            }
            _ => self.slice_start + self.slice,
        }
    }

    pub fn consume(&mut self, bytes: u64) {
        self.used = self.used.saturating_add(bytes);
        if let Some(group) = &self.group {
            group.consume(bytes);
        }
    }
}

/// A datagram direction's limits (`udp_sock_speed_limit`): bytes and packets per slice. A
/// datagram over either is dropped, as UDP allows, rather than holding the session up.
#[derive(Debug, Clone, Default)]
pub struct DatagramLimiter {
    bytes: Option<Limiter>,
    packets: Option<Limiter>,
    /// The user's bytes and packets over the whole group (`udp_all_*_speed_limit`).
    group_bytes: Option<GroupBucket>,
    group_packets: Option<GroupBucket>,
}

impl DatagramLimiter {
    pub fn new(limit: Option<&SpeedLimit>, upload: bool) -> DatagramLimiter {
        let Some(limit) = limit else {
            return DatagramLimiter::default();
        };
        let (bytes, packets) = if upload {
            (limit.upload_bytes, limit.upload_packets)
        } else {
            (limit.download_bytes, limit.download_packets)
        };
        DatagramLimiter {
            bytes: Limiter::new(bytes, limit),
            packets: Limiter::new(packets, limit),
            ..DatagramLimiter::default()
        }
    }

    /// The same with a user's group-wide buckets (bytes, packets) on top.
    pub fn with_group(self, (bytes, packets): (Option<GroupBucket>, Option<GroupBucket>)) -> Self {
        DatagramLimiter {
            group_bytes: bytes,
            group_packets: packets,
            ..self
        }
    }

    /// Whether a datagram of `length` bytes may go now; counts it if so.
    pub fn admit(&mut self, length: usize) -> bool {
        let now = Instant::now();
        let fits = |limiter: &mut Option<Limiter>, amount: u64| {
            limiter.as_mut().is_none_or(|l| l.allowance(now) >= amount)
        };
        if !fits(&mut self.bytes, length as u64) || !fits(&mut self.packets, 1) {
            return false;
        }
        let group_fits = |group: &Option<GroupBucket>, amount: u64| {
            group.as_ref().is_none_or(|g| g.allowance() >= amount)
        };
        if !group_fits(&self.group_bytes, length as u64) || !group_fits(&self.group_packets, 1) {
            return false;
        }
        if let Some(group) = &self.group_bytes {
            group.consume(length as u64);
        }
        if let Some(group) = &self.group_packets {
            group.consume(1);
        }
        if let Some(l) = self.bytes.as_mut() {
            l.consume(length as u64);
        }
        if let Some(l) = self.packets.as_mut() {
            l.consume(1);
        }
        true
    }
}

/// Waits until `limiter` allows bytes again; answers how many may go (unbounded without one).
pub async fn allowance(limiter: &mut Option<Limiter>) -> u64 {
    let Some(limiter) = limiter else {
        return u64::MAX;
    };
    loop {
        let allowed = limiter.allowance(Instant::now());
        if allowed > 0 {
            return allowed;
        }
        // Boxed: only a limited direction ever sleeps, and an unboxed timer would grow every
        // relay's future (and so every idle tunnel) by its size.
        Box::pin(tokio::time::sleep_until(limiter.next_try())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slices_refill_and_do_not_bank_idle_time() {
        let limit = SpeedLimit {
            shift_millis: 10,
            upload_bytes: 1000,
            ..Default::default()
        };
        let mut limiter = Limiter::new(limit.upload_bytes, &limit);
        assert_eq!(allowance(&mut limiter).await, 1000);
        limiter.as_mut().unwrap().consume(1000);
        let before = Instant::now();
        assert_eq!(allowance(&mut limiter).await, 1000);
        assert_eq!(before.elapsed(), Duration::from_millis(1024));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(allowance(&mut limiter).await, 1000, "no burst after idling");
        assert!(Limiter::new(0, &limit).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn datagrams_over_the_limit_are_dropped() {
        let limit = SpeedLimit {
            shift_millis: 10,
            upload_bytes: 1000,
            upload_packets: 3,
            ..Default::default()
        };
        let mut up = DatagramLimiter::new(Some(&limit), true);
        assert!(up.admit(600));
        assert!(!up.admit(600), "bytes spent");
        assert!(up.admit(100) && up.admit(100));
        assert!(!up.admit(1), "packets spent");
        tokio::time::sleep(Duration::from_millis(1024)).await;
        assert!(up.admit(600));
        let mut down = DatagramLimiter::new(Some(&limit), false);
        assert!((0..100).all(|_| down.admit(65_000)), "download unlimited");
    }
}
