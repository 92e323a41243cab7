//! Per-user limits that hold for a whole group of processes: `request_alive_max`,
//! `request_rate_limit` and `connection_rate_limit` count every worker of every generation,
//! draining ones included, as g3proxy's single process counts its threads.
//!
//! The counters live in one shared file, `<control_dir>/<group>.user-limits` (mode 0600, in
//! the directory only we own), which every process of the group maps and changes with
//! atomic operations only: no lock, no message per request. The supervisor makes it when a
//! group starts with no worker alive; supervisors that follow (handoff, systemd's restart,
//! after a crash) keep using it, since its path is all they need.
//!
//! The same slots carry a user's block: a generation whose config blocks a user marks its
//! slot, and the tasks of that user in older generations end at their next idle check.
//!
//! Layout: a header (magic, boot id, one owner pid per worker column), then user slots (a
//! user's hash, its live tasks, one rate bucket per kind (requests, connections, bytes each
//! way), the block), then one ledger per worker
//! column: how many live tasks each user has in that worker. A worker takes a free column
//! when it starts. When a worker dies without giving its tasks back, the supervisor subtracts
//! its ledger from the users' counts and frees the column, so a crash never leaves a user
//! locked out.
//!
//! Rates use the generic cell rate algorithm: one atomic "theoretical arrival time" per
//! bucket on the system's monotonic clock, which every process of a boot shares.

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use std::time::Duration;

use crate::types::{GlobalSpeedLimit, RateQuota};

const MAGIC: u64 = u64::from_le_bytes(*b"g3ulim02");
/// Users with a group-wide limit that one group can count; more are let through unlimited
/// (and logged), never refused for our lack of room.
pub const SLOTS: usize = 16384;
/// Workers alive at once, over every generation.
pub const COLUMNS: usize = 256;

const HEADER_SIZE: usize = 4096;
const BLOCK_EPOCH_OFFSET: usize = 16;
const OWNERS_OFFSET: usize = 64;
const SLOT_SIZE: usize = 128;
const SLOTS_OFFSET: usize = HEADER_SIZE;
const LEDGERS_OFFSET: usize = SLOTS_OFFSET + SLOTS * SLOT_SIZE;
const FILE_SIZE: usize = LEDGERS_OFFSET + COLUMNS * SLOTS * 4;
/// How far a user's slot may be from its hash's home.
const MAX_PROBES: usize = 64;
/// A column's owner while a supervisor gives its tasks back.
const SETTLING: u32 = u32::MAX;

/// The rate buckets of a user's slot: events (requests, connections), TCP bytes and UDP
/// bytes and packets (each way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Requests,
    Connections,
    TcpUpload,
    TcpDownload,
    UdpUpload,
    UdpDownload,
    UdpUploadPackets,
    UdpDownloadPackets,
    /// Task log events (`log_rate_limit`).
    Logs,
}

/// The mapped file. Everything in it is read and written through atomics.
pub struct UserLimits {
    base: NonNull<u8>,
    _file: File,
}

// The mapping is only touched through atomics, from any thread.
unsafe impl Send for UserLimits {}
unsafe impl Sync for UserLimits {}

impl Drop for UserLimits {
    fn drop(&mut self) {
        // SAFETY: the mapping was made with this length and nothing borrows it past `self`.
        let _ = unsafe { munmap(self.base.cast(), FILE_SIZE) };
    }
}

pub fn path(control_dir: &Path, group: &str) -> PathBuf {
    control_dir.join(format!("{group}.user-limits"))
}

/// This boot's identity: a region from another boot has meaningless clock readings.
fn boot_id() -> u64 {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    fnv1a(&[text.trim().as_bytes()])
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The key of a user's slot: never 0, which marks a free slot.
pub fn user_key(user_group: &str, user: &str) -> u64 {
    fnv1a(&[user_group.as_bytes(), user.as_bytes()]) | 1
}

/// Nanoseconds on the monotonic clock, which all processes of one boot share.
fn monotonic_nanos() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0);
    // Never 0: a fresh bucket's arrival time is 0 and must lie in the past.
    now.max(1)
}

impl UserLimits {
    /// For a supervisor: the group's region, made anew when `fresh` (no worker of the group
    /// is alive) or when the file is missing, foreign or from another boot. A new file
    /// replaces the old one by a rename, so a process still mapping the old one is never
    /// cut off from its memory.
    pub fn prepare(path: &Path, fresh: bool) -> io::Result<UserLimits> {
        if !fresh && let Ok(existing) = UserLimits::open(path) {
            return Ok(existing);
        }
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.set_len(FILE_SIZE as u64)?;
        let limits = UserLimits::map(file)?;
        limits.u64_at(8).store(boot_id(), Ordering::Relaxed);
        limits.u64_at(0).store(MAGIC, Ordering::Release);
        std::fs::rename(&temporary, path)?;
        Ok(limits)
    }

    /// For a worker (or a supervisor that follows another): the group's region as it is.
    pub fn open(path: &Path) -> io::Result<UserLimits> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() != FILE_SIZE as u64 {
            return Err(io::Error::other("user limits file of another size"));
        }
        let limits = UserLimits::map(file)?;
        if limits.u64_at(0).load(Ordering::Acquire) != MAGIC
            || limits.u64_at(8).load(Ordering::Relaxed) != boot_id()
        {
            return Err(io::Error::other(
                "user limits file of another build or boot",
            ));
        }
        Ok(limits)
    }

    fn map(file: File) -> io::Result<UserLimits> {
        let length = NonZeroUsize::new(FILE_SIZE).ok_or_else(|| io::Error::other("size"))?;
        // SAFETY: a shared mapping of a file we opened read-write, of the file's length; it
        // is only ever accessed through atomics (see the module comment).
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file,
                0,
            )
        }
        .map_err(io::Error::from)?;
        Ok(UserLimits {
            base: base.cast(),
            _file: file,
        })
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= FILE_SIZE);
        // SAFETY: in bounds, 8-aligned (the mapping is page-aligned), and only ever accessed
        // atomically by every process.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicU64) }
    }

    fn i64_at(&self, offset: usize) -> &AtomicI64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= FILE_SIZE);
        // SAFETY: as for `u64_at`.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicI64) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= FILE_SIZE);
        // SAFETY: as for `u64_at`, 4-aligned.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicU32) }
    }

    fn i32_at(&self, offset: usize) -> &AtomicI32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= FILE_SIZE);
        // SAFETY: as for `u32_at`.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicI32) }
    }

    fn owner(&self, column: usize) -> &AtomicU32 {
        self.u32_at(OWNERS_OFFSET + column * 4)
    }

    fn slot_key(&self, slot: usize) -> &AtomicU64 {
        self.u64_at(SLOTS_OFFSET + slot * SLOT_SIZE)
    }

    fn alive(&self, slot: usize) -> &AtomicI64 {
        self.i64_at(SLOTS_OFFSET + slot * SLOT_SIZE + 8)
    }

    fn bucket(&self, slot: usize, bucket: Bucket) -> &AtomicU64 {
        let offset = match bucket {
            Bucket::Requests => 16,
            Bucket::Connections => 24,
            Bucket::TcpUpload => 40,
            Bucket::TcpDownload => 48,
            Bucket::UdpUpload => 56,
            Bucket::UdpDownload => 64,
            Bucket::UdpUploadPackets => 72,
            Bucket::UdpDownloadPackets => 80,
            Bucket::Logs => 88,
        };
        self.u64_at(SLOTS_OFFSET + slot * SLOT_SIZE + offset)
    }

    fn ledger(&self, column: usize, slot: usize) -> &AtomicI32 {
        self.i32_at(LEDGERS_OFFSET + (column * SLOTS + slot) * 4)
    }

    /// A worker's column for `pid`; `None` when every column is taken.
    pub fn claim_column(&self, pid: u32) -> Option<usize> {
        (0..COLUMNS).find(|&column| {
            self.owner(column)
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Gives back the tasks of every column whose owner `alive` says is no running worker of
    /// the group, and frees those columns; returns how many. For the supervisor: when it
    /// starts, when a worker exits, and now and then (workers it adopted die unwatched).
    pub fn reclaim(&self, alive: impl Fn(u32) -> bool) -> usize {
        let mut reclaimed = 0;
        for column in 0..COLUMNS {
            let pid = self.owner(column).load(Ordering::Acquire);
            if pid == 0 || pid == SETTLING || alive(pid) {
                continue;
            }
            // Taken from the dead owner first: of two supervisors reclaiming at once (a
            // handoff), one settles; a worker never claims a column being settled.
            if self
                .owner(column)
                .compare_exchange(pid, SETTLING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.settle(column);
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Gives back what `column`'s ledger holds, then frees the column (its owner is
    /// already [`SETTLING`]).
    fn settle(&self, column: usize) {
        for slot in 0..SLOTS {
            let held = self.ledger(column, slot).swap(0, Ordering::AcqRel);
            if held != 0 {
                self.alive(slot).fetch_sub(held as i64, Ordering::AcqRel);
            }
        }
        self.owner(column).store(0, Ordering::Release);
    }

    fn blocked(&self, slot: usize) -> &AtomicU64 {
        self.u64_at(SLOTS_OFFSET + slot * SLOT_SIZE + 32)
    }

    /// The slot of the user with `key` if it has one; none is taken.
    pub fn find(&self, key: u64) -> Option<usize> {
        let home = (key as usize) % SLOTS;
        (0..MAX_PROBES)
            .map(|probe| (home + probe) % SLOTS)
            .take_while(|&slot| self.slot_key(slot).load(Ordering::Acquire) != 0)
            .find(|&slot| self.slot_key(slot).load(Ordering::Acquire) == key)
    }

    pub fn set_blocked(&self, slot: usize, blocked: bool) {
        let before = self.blocked(slot).swap(blocked as u64, Ordering::AcqRel);
        if before != blocked as u64 {
            self.u64_at(BLOCK_EPOCH_OFFSET)
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Changes whenever any user's block changes: a process that saw the same number before
    /// need not look at a user's slot again (one load per request instead of a probe).
    pub fn block_epoch(&self) -> u64 {
        self.u64_at(BLOCK_EPOCH_OFFSET).load(Ordering::Acquire)
    }

    pub fn is_blocked(&self, slot: usize) -> bool {
        self.blocked(slot).load(Ordering::Acquire) != 0
    }

    /// The slot of the user with `key`, taken now if it has none; `None` when the table is
    /// full around its place.
    pub fn slot(&self, key: u64) -> Option<usize> {
        let home = (key as usize) % SLOTS;
        for probe in 0..MAX_PROBES {
            let slot = (home + probe) % SLOTS;
            let entry = self.slot_key(slot);
            match entry.load(Ordering::Acquire) {
                found if found == key => return Some(slot),
                0 => match entry.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(slot),
                    Err(found) if found == key => return Some(slot),
                    Err(_) => continue,
                },
                _ => continue,
            }
        }
        None
    }

    /// One more live task for the user in `slot`, counted in `column`'s ledger; `false`
    /// (nothing counted) when the user already has `max`.
    pub fn acquire_alive(&self, slot: usize, column: usize, max: u32) -> bool {
        // The ledger first: should this worker die between the two, the supervisor takes
        // back one task too many, which errs toward letting a client in.
        self.ledger(column, slot).fetch_add(1, Ordering::AcqRel);
        let before = self.alive(slot).fetch_add(1, Ordering::AcqRel);
        if before >= max as i64 {
            self.alive(slot).fetch_sub(1, Ordering::AcqRel);
            self.ledger(column, slot).fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn release_alive(&self, slot: usize, column: usize) {
        self.alive(slot).fetch_sub(1, Ordering::AcqRel);
        self.ledger(column, slot).fetch_sub(1, Ordering::AcqRel);
    }

    /// The user's live tasks over the whole group.
    pub fn alive_count(&self, slot: usize) -> i64 {
        self.alive(slot).load(Ordering::Acquire)
    }

    /// Takes one event of `quota` from the user's `bucket`; `false` when it is used up.
    pub fn take(&self, slot: usize, bucket: Bucket, quota: &RateQuota) -> bool {
        let emission = quota.emission_interval().as_nanos().max(1) as u64;
        let tolerance = emission.saturating_mul(quota.burst.saturating_sub(1) as u64);
        let arrival = self.bucket(slot, bucket);
        let now = monotonic_nanos();
        let mut expected = arrival.load(Ordering::Acquire);
        loop {
            let earliest = expected.max(now);
            if earliest - now > tolerance {
                return false;
            }
            match arrival.compare_exchange_weak(
                expected,
                earliest.saturating_add(emission),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(found) => expected = found,
            }
        }
    }
}

/// A user's bucket of bytes or packets: what `units` per `interval` (bursts up to `burst`)
/// cost on the bucket's clock.
#[derive(Debug, Clone, Copy)]
pub struct FlowRate {
    interval_nanos: u128,
    bytes: u128,
    tolerance: u64,
}

impl FlowRate {
    pub fn new(interval: Duration, units: u64, burst: u64) -> FlowRate {
        let interval_nanos = interval.as_nanos().max(1);
        let bytes = (units as u128).max(1);
        // Rounded up, so that an empty bucket holds the whole burst (see `capacity`).
        let tolerance = (burst.max(1) as u128 * interval_nanos).div_ceil(bytes);
        FlowRate {
            interval_nanos,
            bytes,
            tolerance: tolerance.min(u64::MAX as u128) as u64,
        }
    }

    /// What an empty bucket lets through at once: the burst, at least 1.
    pub fn capacity(&self) -> u64 {
        (self.tolerance as u128 * self.bytes / self.interval_nanos).clamp(1, u64::MAX as u128)
            as u64
    }

    /// The bytes of a [`GlobalSpeedLimit`].
    pub fn of_bytes(limit: &GlobalSpeedLimit) -> FlowRate {
        FlowRate::new(limit.interval, limit.bytes, limit.burst_bytes)
    }

    fn cost(&self, bytes: u64) -> u64 {
        (bytes as u128 * self.interval_nanos / self.bytes).min(u64::MAX as u128) as u64
    }
}

impl UserLimits {
    /// How far the bucket's arrival time is ahead of now: the time its content takes to
    /// drain.
    fn backlog(&self, slot: usize, bucket: Bucket) -> u64 {
        self.bucket(slot, bucket)
            .load(Ordering::Acquire)
            .saturating_sub(monotonic_nanos())
    }

    /// Bytes the user's `bucket` lets through now (every process shares it).
    pub fn allowance(&self, slot: usize, bucket: Bucket, rate: &FlowRate) -> u64 {
        let room = rate.tolerance.saturating_sub(self.backlog(slot, bucket)) as u128;
        (room * rate.bytes / rate.interval_nanos).min(u64::MAX as u128) as u64
    }

    /// How long until `bytes` more fit in the bucket.
    pub fn wait_for(&self, slot: usize, bucket: Bucket, rate: &FlowRate, bytes: u64) -> Duration {
        let needed = self.backlog(slot, bucket).saturating_add(rate.cost(bytes));
        Duration::from_nanos(needed.saturating_sub(rate.tolerance))
    }

    /// Counts `bytes` that went through.
    pub fn consume(&self, slot: usize, bucket: Bucket, rate: &FlowRate, bytes: u64) {
        let cost = rate.cost(bytes);
        let now = monotonic_nanos();
        let _ = self.bucket(slot, bucket).fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |arrival| Some(arrival.max(now).saturating_add(cost)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> (PathBuf, UserLimits) {
        let path = std::env::temp_dir().join(format!(
            "g3proxy-user-limits-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let limits = UserLimits::prepare(&path, true).unwrap();
        (path, limits)
    }

    #[test]
    fn alive_counts_hold_across_mappings_and_crashes() {
        let (path, first) = region();
        let second = UserLimits::open(&path).unwrap();
        let (a, b) = (
            first.claim_column(100).unwrap(),
            second.claim_column(200).unwrap(),
        );
        assert_ne!(a, b);
        let slot = first.slot(user_key("g", "alice")).unwrap();
        assert_eq!(second.slot(user_key("g", "alice")), Some(slot));
        assert_eq!(second.find(user_key("g", "alice")), Some(slot));
        assert_eq!(second.find(user_key("g", "bob")), None);
        second.set_blocked(slot, true);
        assert!(first.is_blocked(slot));
        assert!(first.acquire_alive(slot, a, 2));
        assert!(second.acquire_alive(slot, b, 2));
        assert!(!first.acquire_alive(slot, a, 2));
        assert_eq!(second.alive_count(slot), 2);
        // Worker 200 dies holding its task: the supervisor gives it back.
        assert_eq!(first.reclaim(|pid| pid == 100), 1);
        assert_eq!(first.alive_count(slot), 1);
        assert!(first.acquire_alive(slot, a, 2));
        first.release_alive(slot, a);
        first.release_alive(slot, a);
        assert_eq!(first.alive_count(slot), 0);
        // Made anew, the region forgets everything.
        let fresh = UserLimits::prepare(&path, true).unwrap();
        assert_eq!(fresh.alive_count(slot), 0);
        assert_eq!(fresh.claim_column(1), Some(0));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rates_allow_their_burst_then_their_pace() {
        let (path, limits) = region();
        let quota = RateQuota {
            count: 5,
            interval: Duration::from_secs(3600),
            burst: 5,
        };
        let slot = limits.slot(user_key("g", "bob")).unwrap();
        let taken = (0..10)
            .filter(|_| limits.take(slot, Bucket::Requests, &quota))
            .count();
        assert_eq!(taken, 5);
        // The other bucket is the user's own too.
        assert!(limits.take(slot, Bucket::Connections, &quota));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn byte_buckets_allow_a_burst_then_their_rate() {
        let (path, limits) = region();
        let rate = FlowRate::new(Duration::from_secs(1), 1000, 1000);
        let slot = limits.slot(user_key("g", "carol")).unwrap();
        let first = limits.allowance(slot, Bucket::TcpDownload, &rate);
        assert!((990..=1000).contains(&first), "{first}");
        limits.consume(slot, Bucket::TcpDownload, &rate, first);
        assert!(limits.allowance(slot, Bucket::TcpDownload, &rate) < 10);
        let wait = limits.wait_for(slot, Bucket::TcpDownload, &rate, 500);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // The other direction is untouched.
        assert!(limits.allowance(slot, Bucket::TcpUpload, &rate) >= 990);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn keys_differ_by_group_and_name() {
        assert_ne!(user_key("g", "ab"), user_key("ga", "b"));
        assert_ne!(user_key("g", "a"), 0);
    }
}
