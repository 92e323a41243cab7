//! Outgoing TCP connections for the escapers: one socket set up as the escaper's config says
//! (bind address, device, keepalive, `tcp_misc_opts`), and Happy Eyeballs
//! ([`happy_eyeballs`], RFC 8305) for targets and next hops alike: both families resolved at
//! once, connection attempts started `connection_attempt_delay` apart (or at once when the
//! previous one failed), alternating families, the first connection to succeed winning.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::escapers::{HappyEyeballsConfig, QueryStrategy, TcpConnectConfig};
use g3proxy_shared::config::tls::TlsClientConfig;
use g3proxy_shared::types::{TcpKeepalive, TcpMiscOpts};
use nix::sys::socket::{setsockopt, sockopt};
use rustls::pki_types::ServerName;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Connected;
use crate::conn::{Stream, sockopt as misc};
use crate::error::TaskError;
use crate::resolvers::{Family, Record, Resolver};

/// How an escaper's outgoing sockets are set up, besides their bind address.
#[derive(Debug, Clone, Default)]
pub struct SocketOptions {
    pub interface: Option<String>,
    pub keepalive: TcpKeepalive,
    pub misc: TcpMiscOpts,
}

/// Connects to `address` from `bind` (any local address when `None`) within `timeout`.
pub async fn connect_tcp(
    address: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    options: &SocketOptions,
) -> Result<Connected, TaskError> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| TaskError::Internal(e.to_string()))?;
    if let Some(device) = &options.interface {
        setsockopt(
            &socket,
            sockopt::BindToDevice,
            &std::ffi::OsString::from(device),
        )
        .map_err(|e| TaskError::Internal(format!("bind_interface {device}: {e}")))?;
    }
    if let Some(bind) = bind {
        socket
            .bind(SocketAddr::new(bind, 0))
            .map_err(|e| TaskError::Internal(format!("bind {bind}: {e}")))?;
    }
    if options.keepalive.enable {
        set_keepalive(&socket, &options.keepalive);
    }
    let _ = socket.set_nodelay(true);
    // Before the connect: the MSS goes out in the SYN.
    if !options.misc.is_empty()
        && let Err(e) = misc::apply_tcp(&socket, address.is_ipv6(), &options.misc)
    {
        tracing::debug!("tcp_misc_opts toward {address}: {e}");
    }
    match tokio::time::timeout(timeout, socket.connect(address)).await {
        Ok(Ok(stream)) => {
            let bound = stream
                .local_addr()
                .map_err(|e| TaskError::Internal(e.to_string()))?;
            Ok(Connected {
                stream: Stream::plain(stream),
                next_hop: address,
                bound,
                speed_limit: None,
                names_client: false,
            })
        }
        Ok(Err(error)) => Err(TaskError::from_connect(error)),
        Err(_) => Err(TaskError::UpstreamConnectTimeout),
    }
}

/// TLS on top of `connected`, the peer's certificate checked against `name`, or else
/// `host` (a name, or an address).
pub async fn tls_over(
    connected: Connected,
    config: &TlsClientConfig,
    name: Option<ServerName<'static>>,
    host: &Host,
) -> Result<Connected, TaskError> {
    let name = match (name, host) {
        (Some(name), _) => name,
        (None, Host::Domain(domain)) => ServerName::try_from(domain.clone())
            .map_err(|e| TaskError::UpstreamTls(std::io::Error::other(e)))?,
        (None, Host::Ip(ip)) => ServerName::IpAddress((*ip).into()),
    };
    let tcp = connected.stream.into_tcp();
    let (stream, _facts) =
        Stream::connect_tls(tcp, config.rustls.clone(), name, config.handshake_timeout)
            .await
            .map_err(TaskError::UpstreamTls)?;
    Ok(Connected {
        stream,
        ..connected
    })
}

/// The unspecified address of `peer`'s family, to bind a socket toward it from any address.
pub fn any_address_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Keepalive is a tuning: a kernel that refuses a value leaves the connection as it is.
fn set_keepalive(socket: &TcpSocket, keepalive: &TcpKeepalive) {
    let _ = setsockopt(socket, sockopt::KeepAlive, &true);
    let secs = |d: Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
    let _ = setsockopt(socket, sockopt::TcpKeepIdle, &secs(keepalive.idle_time));
    if let Some(interval) = keepalive.probe_interval {
        let _ = setsockopt(socket, sockopt::TcpKeepInterval, &secs(interval));
    }
    if let Some(count) = keepalive.probe_count {
        let _ = setsockopt(socket, sockopt::TcpKeepCount, &count);
    }
}

/// What a Happy Eyeballs connection needs besides the target.
pub struct Racing<'a> {
    pub resolver: &'a Arc<Resolver>,
    pub strategy: QueryStrategy,
    pub config: &'a HappyEyeballsConfig,
    pub tcp_connect: &'a TcpConnectConfig,
    pub options: &'a SocketOptions,
    /// Whether an address may be connected to (the egress filter, the families allowed).
    pub allowed: &'a (dyn Fn(IpAddr) -> Result<(), TaskError> + Sync),
    /// The local address to connect to an address from (`None`: any); an error when there
    /// is none to use any more (a published bind that expired since the address was let in).
    pub bind: &'a (dyn Fn(IpAddr) -> Result<Option<IpAddr>, TaskError> + Sync),
    /// Reorders one family's addresses (the `pick` strategy).
    pub order: &'a (dyn Fn(&mut [IpAddr]) + Sync),
}

/// Connects to `target` as RFC 8305 describes. At most `tcp_connect.max_retry + 1` attempts,
/// each within `tcp_connect.each_timeout`; the last failure if none succeeds.
pub async fn happy_eyeballs(
    racing: &Racing<'_>,
    target: &HostPort,
) -> Result<Connected, TaskError> {
    let domain = match &target.host {
        Host::Ip(ip) => {
            let ip = ip.to_canonical();
            (racing.allowed)(ip)?;
            let attempts = Attempts::new(racing, target.port);
            return attempts.run_all(VecDeque::from([ip])).await;
        }
        Host::Domain(domain) => domain.as_str(),
    };
    let (preferred, other) = match racing.strategy {
        QueryStrategy::Ipv4Only => (Family::V4, None),
        QueryStrategy::Ipv6Only => (Family::V6, None),
        QueryStrategy::Ipv4First => (Family::V4, Some(Family::V6)),
        QueryStrategy::Ipv6First => (Family::V6, Some(Family::V4)),
    };
    let resolver = racing.resolver;
    let mut first = pin!(resolver.lookup(domain, preferred));
    let Some(other) = other else {
        let (record, _) = first.await;
        let queue = racing.usable(domain, &record)?;
        return Attempts::new(racing, target.port).run_all(queue).await;
    };
    let mut second = pin!(resolver.lookup(domain, other));
    // The preferred family's answer, or the other's once `resolution_delay` has passed
    // without the preferred one.
    let (start_with, waiting_for) = tokio::select! {
        biased;
        (record, _) = &mut first => (record, Pending::Second),
        (record, _) = &mut second => {
            let delay = racing.config.resolution_delay.0;
            match tokio::time::timeout(delay, &mut first).await {
                // Both answered: every address known, the preferred family's first. (The
                // preferred lookup is done: it must not be awaited again.)
                Ok((preferred, _)) => {
                    let (ours, theirs) = (racing.usable(domain, &preferred), racing.usable(domain, &record));
                    let queue = interleave(
                        ours.as_ref().map(Clone::clone).unwrap_or_default(),
                        theirs.as_ref().map(Clone::clone).unwrap_or_default(),
                        racing.config.first_address_family_count,
                    );
                    if queue.is_empty() {
                        return Err(ours.err().or(theirs.err()).unwrap_or_else(|| {
                            TaskError::Resolver(format!("{domain}: no address"))
                        }));
                    }
                    return Attempts::new(racing, target.port).run_all(queue).await;
                }
                Err(_) => (record, Pending::First),
            }
        }
    };
    let later = async {
        let (record, _) = match waiting_for {
            Pending::First => first.await,
            Pending::Second => second.await,
        };
        record
    };
    let queue = match racing.usable(domain, &start_with) {
        Ok(queue) => queue,
        // Nothing to start with: the other family is all there is.
        Err(error) => {
            let record = later.await;
            return match racing.usable(domain, &record) {
                Ok(queue) => Attempts::new(racing, target.port).run_all(queue).await,
                Err(_) => Err(error),
            };
        }
    };
    let preferred_first = matches!(waiting_for, Pending::Second);
    let later = Later {
        lookup: Box::pin(later),
        deadline: Instant::now() + racing.config.second_resolution_timeout.0,
        preferred: !preferred_first,
        domain,
    };
    Attempts::new(racing, target.port)
        .run(queue, Some(later))
        .await
}

enum Pending {
    First,
    Second,
}

/// The other family's lookup, still running when the attempts start.
struct Later<'a, F> {
    lookup: std::pin::Pin<Box<F>>,
    deadline: Instant,
    /// Whether it is the preferred family (then its addresses go first).
    preferred: bool,
    domain: &'a str,
}

impl Racing<'_> {
    /// The addresses of `record` that may be used, ordered; the error when none may.
    fn usable(&self, domain: &str, record: &Record) -> Result<VecDeque<IpAddr>, TaskError> {
        let mut addresses = match &record.result {
            Ok(ips) => ips.clone(),
            Err(error) => return Err(TaskError::Resolver(format!("{domain}: {error}"))),
        };
        if addresses.is_empty() {
            return Err(TaskError::Resolver(format!("{domain}: no address")));
        }
        let mut refusal = None;
        addresses.retain(|ip| match (self.allowed)(*ip) {
            Ok(()) => true,
            Err(error) => {
                refusal.get_or_insert(error);
                false
            }
        });
        if let Some(error) = refusal.filter(|_| addresses.is_empty()) {
            return Err(error);
        }
        (self.order)(&mut addresses);
        Ok(addresses.into())
    }
}

/// RFC 8305 §4: `first_count` addresses of the first family, then alternating.
fn interleave(
    first: VecDeque<IpAddr>,
    second: VecDeque<IpAddr>,
    first_count: usize,
) -> VecDeque<IpAddr> {
    let mut first = first;
    let mut second = second;
    let mut queue = VecDeque::with_capacity(first.len() + second.len());
    for _ in 0..first_count.max(1) {
        match first.pop_front() {
            Some(ip) => queue.push_back(ip),
            None => break,
        }
    }
    loop {
        match (second.pop_front(), first.pop_front()) {
            (None, None) => return queue,
            (a, b) => queue.extend(a.into_iter().chain(b)),
        }
    }
}

/// The connection attempts of one task.
struct Attempts<'r, 'a> {
    racing: &'r Racing<'a>,
    port: u16,
}

impl<'r, 'a> Attempts<'r, 'a> {
    fn new(racing: &'r Racing<'a>, port: u16) -> Self {
        Attempts { racing, port }
    }

    /// Attempts on `queue` alone: every address is known.
    async fn run_all(&self, queue: VecDeque<IpAddr>) -> Result<Connected, TaskError> {
        self.run::<std::future::Ready<Arc<Record>>>(queue, None)
            .await
    }

    /// Attempts on `queue`, with the addresses `later` brings when it brings them.
    async fn run<F: Future<Output = Arc<Record>>>(
        &self,
        mut queue: VecDeque<IpAddr>,
        mut later: Option<Later<'_, F>>,
    ) -> Result<Connected, TaskError> {
        let racing = self.racing;
        let mut left = racing.tcp_connect.max_retry + 1;
        let mut running = JoinSet::new();
        let mut last_error = TaskError::Resolver("no address to connect to".into());
        let mut next_at = Instant::now();
        loop {
            // Start the next attempt when it is due, or at once when none is running.
            if left > 0
                && (running.is_empty() || Instant::now() >= next_at)
                && let Some(ip) = queue.pop_front()
            {
                left -= 1;
                let address = SocketAddr::new(ip, self.port);
                let bind = match (racing.bind)(ip) {
                    Ok(bind) => bind,
                    Err(error) => {
                        last_error = error;
                        continue;
                    }
                };
                let timeout = racing.tcp_connect.each_timeout.0;
                let options = racing.options.clone();
                running.spawn(async move { connect_tcp(address, bind, timeout, &options).await });
                next_at = Instant::now() + racing.config.connection_attempt_delay.0;
                continue;
            }
            let waiting_for_more = later.is_some() && left > 0;
            if running.is_empty() && (left == 0 || (queue.is_empty() && !waiting_for_more)) {
                return Err(last_error);
            }
            let can_start = left > 0 && !queue.is_empty();
            let lookup_deadline = later.as_ref().map(|l| l.deadline);
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => match done {
                    Some(Ok(Ok(connected))) => return Ok(connected),
                    Some(Ok(Err(error @ TaskError::Internal(_)))) => return Err(error),
                    Some(Ok(Err(error))) => {
                        last_error = error;
                        // The next attempt need not wait for the delay.
                        next_at = Instant::now();
                    }
                    Some(Err(e)) => last_error = TaskError::Internal(e.to_string()),
                    None => {}
                },
                _ = tokio::time::sleep_until(next_at), if can_start && !running.is_empty() => {}
                record = async {
                    match later.as_mut() {
                        Some(l) => l.lookup.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if waiting_for_more => {
                    if let Some(l) = later.take()
                        && let Ok(more) = racing.usable(l.domain, &record)
                    {
                        queue = match l.preferred {
                            true => interleave(more, queue, racing.config.first_address_family_count),
                            false => interleave(queue, more, 1),
                        };
                    }
                }
                _ = tokio::time::sleep_until(lookup_deadline.unwrap_or(next_at)), if waiting_for_more => {
                    later = None;
                }
            }
        }
    }
}
