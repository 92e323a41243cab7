//! The tunnel relay as one hand-written future: both directions, the idle rule and force-quit
//! in a few hundred bytes. An idle tunnel is the proxy's commonest state (thousands per worker
//! for hours), so what it holds is what the proxy costs: each direction waits on its socket's
//! own waker slot ([`Stream::poll_readable`]) instead of a waiter node per await, borrows a
//! buffer only while bytes are readable and gives it back when the socket runs dry, and one
//! timer serves the idle check.
//!
//! Force-quit: the tunnel leaves its waker with the worker once ([`QuitRegistration`]) and
//! looks at the phase whenever it is polled; force-quit wakes every tunnel so it ends at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

use super::{Limiter, RelayEnd, RelayOutcome, RelayPolicy, Side};
use crate::auth::User;
use crate::conn::Stream;
use crate::context::{self, Phase, QuitRegistration};

/// Reads per direction in one poll before letting other tasks run.
const READS_PER_POLL: usize = 16;

pin_project_lite::pin_project! {
    /// Relays between a client and its upstream until both sides closed, the idle rule, an
    /// error or force-quit.
    pub struct Tunnel<'a> {
        client: &'a Stream,
        upstream: &'a Stream,
        policy: &'a RelayPolicy,
        context: &'a context::Context,
        // Checked at each idle check: a user blocked since the tunnel began ends it.
        user: Option<&'a User>,
        quit: QuitRegistration<'a>,
        up: Flow,
        down: Flow,
        #[pin]
        tick: Sleep,
        idle_checks: u32,
        total_at_last_check: u64,
    }
}

/// One direction's state between polls.
struct Flow {
    /// Read and not yet written: `buffer[start..end]`. Empty (no allocation) while idle.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    bytes: u64,
    limiter: Option<Limiter>,
    /// Set while a limited direction waits for its next slice.
    slice_wait: Option<Pin<Box<Sleep>>>,
    state: FlowState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlowState {
    Open,
    /// The reader ended: close_notify queued, flushing, then the half-close.
    Closing,
    Done,
}

impl Flow {
    fn new(limiter: Option<Limiter>) -> Flow {
        Flow {
            buffer: Vec::new(),
            start: 0,
            end: 0,
            bytes: 0,
            limiter,
            slice_wait: None,
            state: FlowState::Open,
        }
    }

    /// Moves bytes `from` → `to` as far as the sockets allow; `Ready` once this direction is
    /// done (end of stream passed on) or failed.
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        from: &Stream,
        to: &Stream,
        buffer_size: usize,
    ) -> Poll<Result<(), (Side, io::Error)>> {
        let mut reads = 0;
        loop {
            match self.state {
                FlowState::Done => return Poll::Ready(Ok(())),
                FlowState::Closing => {
                    // A peer gone while we flush ends this direction, not the other one.
                    let _ = ready!(to.poll_flush(cx));
                    to.shutdown_socket_write();
                    self.state = FlowState::Done;
                    continue;
                }
                FlowState::Open => {}
            }
            if self.start < self.end {
                ready!(to.poll_writable(cx)).map_err(|e| (Side::Writer, e))?;
                match to.try_write(&self.buffer[self.start..self.end]) {
                    Ok(n) => {
                        self.start += n;
                        self.bytes += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err((Side::Writer, e))),
                }
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                continue;
            }
            // Nothing waits in our buffer; TLS may still hold some of it: out before we read
            // (and wait on reading) again.
            ready!(to.poll_flush(cx)).map_err(|e| (Side::Writer, e))?;
            if reads == READS_PER_POLL {
                // Keep the buffer for the next burst and let the other tasks run.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut size = buffer_size;
            if let Some(limiter) = self.limiter.as_mut() {
                let allowed = limiter.allowance(Instant::now());
                if allowed == 0 {
                    let next = limiter.next_try();
                    let wait = self
                        .slice_wait
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
                    wait.as_mut().reset(next);
                    ready!(wait.as_mut().poll(cx));
                    continue;
                }
                size = size.min(allowed as usize);
            }
            match from.poll_readable(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Reader, e))),
                // Dry: the buffer goes back until the socket is readable again.
                Poll::Pending => {
                    self.buffer = Vec::new();
                    return Poll::Pending;
                }
            }
            if self.buffer.len() < size {
                self.buffer.resize(size, 0);
            }
            reads += 1;
            match from.try_read(&mut self.buffer[..size]) {
                Ok(0) => {
                    self.buffer = Vec::new();
                    to.queue_close_notify();
                    self.state = FlowState::Closing;
                }
                Ok(n) => {
                    self.end = n;
                    if let Some(limiter) = self.limiter.as_mut() {
                        limiter.consume(n as u64);
                    }
                }
                // Dry: the buffer goes back until the socket is readable again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.buffer = Vec::new(),
                Err(e) => return Poll::Ready(Err((Side::Reader, e))),
            }
        }
    }
}

impl Tunnel<'_> {
    /// Bytes relayed so far: client to upstream, upstream to client.
    pub fn transferred(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }
}

/// Relays between `client` and `upstream` with `policy` until the tunnel ends.
pub fn relay_tunnel<'a>(
    client: &'a Stream,
    upstream: &'a Stream,
    policy: &'a RelayPolicy,
    context: &'a context::Context,
    user: Option<&'a User>,
) -> Tunnel<'a> {
    Tunnel {
        client,
        upstream,
        policy,
        context,
        user,
        quit: QuitRegistration::new(&context.quit_wakers),
        up: Flow::new(policy.upload_limiter_for(user)),
        down: Flow::new(policy.download_limiter_for(user)),
        tick: tokio::time::sleep(policy.idle_check_interval),
        idle_checks: 0,
        total_at_last_check: 0,
    }
}

impl Future for Tunnel<'_> {
    type Output = RelayOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RelayOutcome> {
        let mut this = self.project();
        this.quit.register(cx.waker());
        if this.context.phase() == Phase::ForceQuit {
            return Poll::Ready(RelayOutcome {
                client_to_upstream: this.up.bytes,
                upstream_to_client: this.down.bytes,
                end: RelayEnd::ForceQuit,
            });
        }
        let buffer_size = this.policy.buffer_size;
        let end = match this
            .up
            .poll_copy(cx, this.client, this.upstream, buffer_size)
        {
            Poll::Ready(Err((Side::Reader, e))) => Some(RelayEnd::ClientError(e)),
            Poll::Ready(Err((Side::Writer, e))) => Some(RelayEnd::UpstreamError(e)),
            _ => None,
        };
        let end = end.or_else(|| {
            match this
                .down
                .poll_copy(cx, this.upstream, this.client, buffer_size)
            {
                Poll::Ready(Err((Side::Reader, e))) => Some(RelayEnd::UpstreamError(e)),
                Poll::Ready(Err((Side::Writer, e))) => Some(RelayEnd::ClientError(e)),
                _ => None,
            }
        });
        let closed = this.up.state == FlowState::Done && this.down.state == FlowState::Done;
        let end = end.or(closed.then_some(RelayEnd::Closed));
        let end = end.or_else(|| {
            while this.tick.as_mut().poll(cx).is_ready() {
                if this.user.is_some_and(|user| user.is_blocked()) {
                    return Some(RelayEnd::UserBlocked);
                }
                let total = this.up.bytes + this.down.bytes;
                if total == *this.total_at_last_check {
                    *this.idle_checks += 1;
                    if *this.idle_checks >= this.policy.idle_max_count {
                        return Some(RelayEnd::Idle);
                    }
                } else {
                    (*this.total_at_last_check, *this.idle_checks) = (total, 0);
                }
                // From now, not from the missed deadline: a late poll is one check, not many.
                let next = Instant::now() + this.policy.idle_check_interval;
                this.tick.as_mut().reset(next);
            }
            None
        });
        match end {
            Some(end) => Poll::Ready(RelayOutcome {
                client_to_upstream: this.up.bytes,
                upstream_to_client: this.down.bytes,
                end,
            }),
            None => Poll::Pending,
        }
    }
}
