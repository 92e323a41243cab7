//! Moving bytes, plain or TLS on either side, protocol-agnostic (HTTP framing is decided by
//! the HTTP server and passed in), under one [`RelayPolicy`]: the idle rule
//! (`task_idle_check_interval` × `task_idle_max_count`), force-quit, byte counts and each
//! direction's speed limit. Two shapes share it: tunnels, both ways until the end, through
//! `tunnel.rs`'s hand-written future that holds a buffer only while data flows; and one HTTP
//! body, one way as its framing delimits it, through [`copy_body`].

mod limit;
mod tunnel;

use std::io;
use std::time::Duration;

use g3proxy_proto::http1::{BodyFraming, ChunkedTracker};
use g3proxy_shared::types::SpeedLimit;

use crate::auth::User;
use crate::conn::{Stream, read_buf, write_all_within};
pub use limit::{DatagramLimiter, Limiter};
pub use tunnel::{Tunnel, relay_tunnel};

/// How a server's connections are relayed: its idle rule, copy buffer and speed limit.
#[derive(Debug, Clone, Copy)]
pub struct RelayPolicy {
    pub idle_check_interval: Duration,
    pub idle_max_count: u32,
    pub buffer_size: usize,
    /// `tcp_sock_speed_limit`: upload is client → upstream, download the other way.
    pub speed_limit: Option<SpeedLimit>,
}

impl RelayPolicy {
    /// How long a direction may stall (no byte read or written) before the task ends.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_check_interval * self.idle_max_count
    }

    /// This policy as `user`'s tasks run under it (the user's socket limit and idle count,
    /// see `User::relay_policy`).
    pub fn for_user(&self, user: Option<&User>) -> RelayPolicy {
        user.and_then(|u| u.relay_policy(self)).unwrap_or(*self)
    }

    /// This policy with the escaper's limit on the upstream connection too, the stricter of
    /// the two in each direction (both bound the same bytes).
    pub fn with_upstream_limit(&self, limit: Option<SpeedLimit>) -> RelayPolicy {
        let speed_limit = match (self.speed_limit, limit) {
            (Some(ours), Some(theirs)) => Some(ours.stricter(&theirs)),
            (ours, theirs) => ours.or(theirs),
        };
        RelayPolicy {
            speed_limit: speed_limit.filter(|l| !l.is_unlimited()),
            ..*self
        }
    }

    /// The upload limiter of a task of `user`: the socket's, with the user's group-wide
    /// bucket on top.
    pub fn upload_limiter_for(&self, user: Option<&User>) -> Option<Limiter> {
        Limiter::with_group(self.upload_limiter(), user.and_then(User::group_upload))
    }

    /// As [`RelayPolicy::upload_limiter_for`], the other way.
    pub fn download_limiter_for(&self, user: Option<&User>) -> Option<Limiter> {
        Limiter::with_group(self.download_limiter(), user.and_then(User::group_download))
    }

    pub fn upload_limiter(&self) -> Option<Limiter> {
        self.speed_limit
            .as_ref()
            .and_then(|l| Limiter::new(l.upload_bytes, l))
    }

    pub fn download_limiter(&self) -> Option<Limiter> {
        self.speed_limit
            .as_ref()
            .and_then(|l| Limiter::new(l.download_bytes, l))
    }
}

#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed their sending half.
    Closed,
    Idle,
    ForceQuit,
    /// The task's user was blocked while the tunnel ran.
    UserBlocked,
    ClientError(io::Error),
    UpstreamError(io::Error),
}

#[derive(Debug)]
pub struct RelayOutcome {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
    pub end: RelayEnd,
}

impl RelayEnd {
    /// Why a tunnel ended, as g3's task logs say it.
    pub fn reason(&self) -> &'static str {
        match self {
            RelayEnd::Closed => "ClosedByClient",
            RelayEnd::Idle => "Idle",
            RelayEnd::ForceQuit => "CanceledAsServerQuit",
            RelayEnd::UserBlocked => "CanceledAsUserBlocked",
            RelayEnd::ClientError(_) => "ClientTcpReadFailed",
            RelayEnd::UpstreamError(_) => "UpstreamReadFailed",
        }
    }
}

impl std::fmt::Display for RelayOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = match &self.end {
            RelayEnd::Closed => "closed".to_string(),
            RelayEnd::Idle => "idle".to_string(),
            RelayEnd::ForceQuit => "force quit".to_string(),
            RelayEnd::UserBlocked => "user blocked".to_string(),
            RelayEnd::ClientError(e) => format!("client error: {e}"),
            RelayEnd::UpstreamError(e) => format!("upstream error: {e}"),
        };
        write!(
            f,
            "{end}; {} bytes up, {} bytes down",
            self.client_to_upstream, self.upstream_to_client
        )
    }
}

/// Which stream of a one-way copy failed.
#[derive(Debug)]
pub enum Side {
    Reader,
    Writer,
}

/// Copies one HTTP message body from `from` to `to` as `framing` delimits it, starting with
/// the bytes already read into `from_buffer`. Bytes past the body stay in `from_buffer`.
pub async fn copy_body(
    from: &Stream,
    from_buffer: &mut Vec<u8>,
    to: &Stream,
    framing: BodyFraming,
    idle_timeout: Duration,
    mut limiter: Option<Limiter>,
) -> Result<u64, (Side, io::Error)> {
    let mut copied = 0u64;
    let mut tracker = ChunkedTracker::new();
    let mut remaining = match framing {
        BodyFraming::Empty | BodyFraming::Length(0) => return Ok(0),
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked | BodyFraming::UntilClose => u64::MAX,
    };
    loop {
        if !from_buffer.is_empty() {
            let allowed = limit::allowance(&mut limiter).await;
            let window = &from_buffer[..(from_buffer.len() as u64).min(allowed) as usize];
            let take = match framing {
                BodyFraming::Chunked => tracker
                    .advance(window)
                    .map_err(|e| (Side::Reader, io::Error::new(io::ErrorKind::InvalidData, e)))?,
                _ => remaining.min(window.len() as u64) as usize,
            };
            write_all_within(to, &from_buffer[..take], idle_timeout)
                .await
                .map_err(|e| (Side::Writer, e))?;
            from_buffer.drain(..take);
            copied += take as u64;
            if let Some(limiter) = limiter.as_mut() {
                limiter.consume(take as u64);
            }
            if framing != BodyFraming::UntilClose {
                remaining -= take as u64;
            }
        }
        if remaining == 0 || tracker.is_done() {
            return Ok(copied);
        }
        if !from_buffer.is_empty() {
            // The slice is spent; the rest waits for the next one.
            continue;
        }
        from_buffer.reserve(16 * 1024);
        let read = match tokio::time::timeout(idle_timeout, read_buf(from, from_buffer)).await {
            Ok(result) => result.map_err(|e| (Side::Reader, e))?,
            Err(_) => {
                return Err((
                    Side::Reader,
                    io::Error::new(io::ErrorKind::TimedOut, "body transfer idle"),
                ));
            }
        };
        if read == 0 {
            return match framing {
                BodyFraming::UntilClose => Ok(copied),
                _ => Err((
                    Side::Reader,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside a message body"),
                )),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, Phase};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;

    use crate::conn::test_pair as pair;

    fn context(phase: watch::Receiver<Phase>) -> Context {
        Context::new(phase, Default::default())
    }

    fn limits() -> RelayPolicy {
        RelayPolicy {
            idle_check_interval: Duration::from_secs(1),
            idle_max_count: 3,
            buffer_size: 4096,
            speed_limit: None,
        }
    }

    #[tokio::test]
    async fn relays_both_ways_and_counts() {
        let (client_far, client) = pair().await;
        let (mut upstream_far, upstream) = pair().await;
        let (_tx, phase) = watch::channel(Phase::Serving);
        let relay = tokio::spawn(async move {
            relay_tunnel(&client, &upstream, &limits(), &context(phase), None).await
        });
        let mut client_far = client_far;
        client_far.write_all(&[1u8; 100_000]).await.unwrap();
        let mut got = vec![0u8; 100_000];
        upstream_far.read_exact(&mut got).await.unwrap();
        upstream_far.write_all(b"pong").await.unwrap();
        upstream_far.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client_far.shutdown().await.unwrap();
        client_far.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"pong");
        let outcome = relay.await.unwrap();
        assert!(matches!(outcome.end, RelayEnd::Closed), "{outcome:?}");
        assert_eq!(
            (outcome.client_to_upstream, outcome.upstream_to_client),
            (100_000, 4)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnels_end() {
        let (_client_far, client) = pair().await;
        let (_upstream_far, upstream) = pair().await;
        let (_tx, phase) = watch::channel(Phase::Serving);
        let outcome = relay_tunnel(&client, &upstream, &limits(), &context(phase), None).await;
        assert!(matches!(outcome.end, RelayEnd::Idle), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_out() {
        let (_far, near) = pair().await;
        let data = vec![0u8; 256 << 20];
        let error = write_all_within(&near, &data, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    /// Force-quit ends an idle tunnel at once, through the waker it left with the worker,
    /// not at its next idle check (an hour away here; paused time would jump there).
    #[tokio::test(start_paused = true)]
    async fn force_quit_ends_tunnels() {
        let (_client_far, client) = pair().await;
        let (_upstream_far, upstream) = pair().await;
        let (tx, phase) = watch::channel(Phase::Serving);
        let context = std::sync::Arc::new(context(phase));
        let policy = RelayPolicy {
            idle_check_interval: Duration::from_secs(3600),
            ..limits()
        };
        let started = tokio::time::Instant::now();
        let relay = tokio::spawn({
            let context = context.clone();
            async move { relay_tunnel(&client, &upstream, &policy, &context, None).await }
        });
        // Let the tunnel settle into waiting.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        context.set_phase(&tx, Phase::ForceQuit);
        assert!(matches!(relay.await.unwrap().end, RelayEnd::ForceQuit));
        assert!(started.elapsed() < Duration::from_secs(3600));
    }
}
