//! Upstream connections kept between requests for one site, shared by every client
//! connection the worker serves: the most recently used first (the one least likely to have
//! been closed by the upstream), none older than `idle_expire`, at most `max_idle_count`.
//! A connection the upstream closed meanwhile is noticed when it is taken and dropped.

use std::sync::Mutex;

use g3proxy_shared::config::servers::UpstreamKeepalive;
use tokio::time::Instant;

use super::UpstreamConn;

pub struct UpstreamPool {
    keepalive: UpstreamKeepalive,
    idle: Mutex<Vec<(UpstreamConn, Instant)>>,
}

impl UpstreamPool {
    pub fn new(keepalive: UpstreamKeepalive) -> UpstreamPool {
        UpstreamPool {
            keepalive,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(UpstreamConn, Instant)>> {
        // Holders only push and pop: a panic cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection that is still open, if there is one; for a user with its own
    /// `http_upstream_keepalive`, one idle for less than its `idle_expire` too (none if it
    /// turns reuse off).
    pub fn take(&self, user: Option<&UpstreamKeepalive>) -> Option<UpstreamConn> {
        if user.is_some_and(|user| !user.enable) {
            return None;
        }
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle();
            loop {
                let Some((conn, since)) = idle.pop() else {
                    break None;
                };
                let idle_for = since.elapsed();
                if !self.keepalive.permits(idle_for) || !conn.is_reusable(since) {
                    stale.push(conn);
                    continue;
                }
                if user.is_some_and(|user| !user.permits(idle_for)) {
                    // Too old for this user, not for others; the rest are older still.
                    idle.push((conn, since));
                    break None;
                }
                break Some(conn);
            }
        };
        // Closed outside the lock: a TLS close sends an alert.
        drop(stale);
        found
    }

    /// Keeps `conn` for a later request, the oldest kept one making room if need be.
    pub fn put(&self, conn: UpstreamConn) {
        if !self.keepalive.enable || self.keepalive.max_idle_count == 0 {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut idle = self.idle();
            let expire = self.keepalive.idle_expire;
            while idle
                .first()
                .is_some_and(|(_, since)| now.duration_since(*since) >= expire)
            {
                dropped.push(idle.remove(0).0);
            }
            if idle.len() >= self.keepalive.max_idle_count {
                dropped.push(idle.remove(0).0);
            }
            idle.push((conn, now));
        }
        drop(dropped);
    }
}
