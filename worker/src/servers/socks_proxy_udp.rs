//! The UDP half of `socks_proxy`: a SOCKS5 UDP ASSOCIATE session, as g3proxy runs it.
//!
//! The client-facing socket binds to `udp_bind_ipv4` / `udp_bind_ipv6` (else the address the
//! client reached us on, in the request's address family) within `udp_bind_port_range`, and
//! the reply announces it (through `transmute_udp_echo_ip`). The first datagram must come from
//! the address the request named (its port too, unless 0) within
//! `udp_client_initial_timeout`; the socket is then connected to that source, so nobody else
//! can inject datagrams. In "udp connect" mode (the default) the first datagram's target is
//! the session's only one and a datagram for another ends it; with `use_udp_associate` each
//! datagram goes to its own target. A fragment, a malformed header, any byte or the end of
//! the TCP control connection, the idle rule or force-quit end the session.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use g3proxy_proto::socks5::{self, Reply};
use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::servers::{PortRange, SocketBuffer, SocksProxyConfig};
use g3proxy_shared::types::acl::ProxyRequestType;
use g3proxy_shared::types::{NetworkAcl, SpeedLimit};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::auth::Gate;
use crate::conn::{Stream, write_all};
use crate::context::Phase;
use crate::error::{Forbidden, TaskError};
use crate::escapers::{Escaper, UdpConnected, UdpRelay};
use crate::pick::random_index;
use crate::relay::{DatagramLimiter, RelayPolicy};
use crate::task::TaskContext;
use tracing::debug;

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

pub struct UdpSession<'a> {
    pub config: &'a SocksProxyConfig,
    pub escaper: &'a Arc<Escaper>,
    pub gate: &'a Gate,
    pub policy: &'a RelayPolicy,
    pub ingress: Option<&'a NetworkAcl>,
    /// `udp_sock_speed_limit`: datagrams over it are dropped.
    pub speed_limit: Option<&'a SpeedLimit>,
    pub phase: watch::Receiver<Phase>,
}

/// Why the session ended, for the debug log.
enum End {
    ControlClosed,
    ControlData,
    Idle,
    ForceQuit,
    NoFirstDatagram,
}

fn bind_client_socket(
    ip: IpAddr,
    range: Option<PortRange>,
    buffer: Option<SocketBuffer>,
) -> std::io::Result<UdpSocket> {
    let bind = |port: u16| std::net::UdpSocket::bind(SocketAddr::new(ip, port));
    let socket = match range {
        None => bind(0)?,
        Some(range) => {
            let count = (range.end - range.start) as usize + 1;
            let random = (0..count.min(10)).map(|_| range.start + random_index(count) as u16);
            random
                .chain(range.start..=range.end)
                .find_map(|port| bind(port).ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::AddrNotAvailable,
                        format!("no free port in {}-{}", range.start, range.end),
                    )
                })?
        }
    };
    if let Some(buffer) = buffer {
        use nix::sys::socket::{setsockopt, sockopt};
        if let Some(size) = buffer.recv {
            setsockopt(&socket.as_fd(), sockopt::RcvBuf, &size)?;
        }
        if let Some(size) = buffer.send {
            setsockopt(&socket.as_fd(), sockopt::SndBuf, &size)?;
        }
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Watches the TCP control connection: any byte or its end closes the session.
async fn control_ended(control: &Stream) -> End {
    let mut byte = [0u8; 1];
    loop {
        if control.readable().await.is_err() {
            return End::ControlClosed;
        }
        match control.try_read(&mut byte) {
            Ok(0) => return End::ControlClosed,
            Ok(_) => return End::ControlData,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return End::ControlClosed,
        }
    }
}

impl UdpSession<'_> {
    /// Serves one UDP ASSOCIATE request whose DST is `requested`, on control connection
    /// `control` whose local address is `local`.
    pub async fn run(
        self,
        control: &Stream,
        local: SocketAddr,
        requested: &HostPort,
        task: &mut TaskContext,
    ) -> Result<(), TaskError> {
        let refuse = |reply: Reply| async move {
            let _ = write_all(control, &socks5::encode_reply(reply, None)).await;
        };
        let expected = match &requested.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip.to_canonical(), requested.port)),
            // pysocks asks with the domain "0" for "any address".
            Host::Domain(domain) if domain == "0" => None,
            Host::Domain(_) => {
                refuse(Reply::AddressTypeNotSupported).await;
                return Err(TaskError::Client(
                    "udp associate names a domain as the client address".into(),
                ));
            }
        };
        let local_ip = local.ip().to_canonical();
        let want_v4 = expected.map_or(local_ip.is_ipv4(), |e| e.is_ipv4());
        let bind_ip = if want_v4 && !self.config.udp_bind_ipv4.is_empty() {
            let list = &self.config.udp_bind_ipv4;
            IpAddr::V4(list[random_index(list.len())])
        } else if !want_v4 && !self.config.udp_bind_ipv6.is_empty() {
            let list = &self.config.udp_bind_ipv6;
            IpAddr::V6(list[random_index(list.len())])
        } else if local_ip.is_ipv4() == want_v4 {
            local_ip
        } else {
            refuse(Reply::GeneralFailure).await;
            return Err(TaskError::Internal(
                "no udp bind address of the client's family".into(),
            ));
        };
        let client = match bind_client_socket(
            bind_ip,
            self.config.udp_bind_port_range,
            self.config.udp_socket_buffer,
        ) {
            Ok(socket) => socket,
            Err(e) => {
                refuse(Reply::GeneralFailure).await;
                return Err(TaskError::Internal(format!("udp bind {bind_ip}: {e}")));
            }
        };
        let bound = client
            .local_addr()
            .map_err(|e| TaskError::Internal(e.to_string()))?;
        let announced = match &self.config.transmute_udp_echo_ip {
            Some(transmute) => SocketAddr::new(transmute.announce(bound.ip()), bound.port()),
            None => bound,
        };
        write_all(
            control,
            &socks5::encode_reply(Reply::Succeeded, Some(announced)),
        )
        .await
        .map_err(TaskError::ClientIo)?;

        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let first = tokio::select! {
            end = control_ended(control) => Err(end),
            first = tokio::time::timeout(
                self.config.udp_client_initial_timeout.0,
                self.first_datagram(&client, expected, &mut buffer),
            ) => first.unwrap_or(Err(End::NoFirstDatagram)),
        };
        let (length, source) = match first {
            Ok(first) => first,
            Err(end) => return self.finish(end, task),
        };
        if let Some(filter) = self.ingress
            && !filter.check(source.ip().to_canonical()).is_permitted()
        {
            return Err(TaskError::Client(format!(
                "udp from {source} refused by ingress_network_filter"
            )));
        }
        client
            .connect(source)
            .await
            .map_err(|e| TaskError::Internal(e.to_string()))?;
        let end = tokio::select! {
            end = control_ended(control) => end,
            relayed = self.relay(&client, &mut buffer, length, task) => relayed?,
        };
        self.finish(end, task)
    }

    fn finish(&self, end: End, task: &TaskContext) -> Result<(), TaskError> {
        let why = match end {
            End::ControlClosed => "the control connection closed",
            End::ControlData => "data on the control connection",
            End::Idle => "idle",
            End::ForceQuit => "force quit",
            End::NoFirstDatagram => {
                return Err(TaskError::ClientTimeout("the first udp datagram"));
            }
        };
        debug!(
            "server {}: task {} udp session ended: {why}",
            task.server_name(),
            task.id
        );
        Ok(())
    }

    /// Waits for the first datagram from the address the client announced.
    async fn first_datagram(
        &self,
        client: &UdpSocket,
        expected: Option<SocketAddr>,
        buffer: &mut [u8],
    ) -> Result<(usize, SocketAddr), End> {
        loop {
            let Ok((length, source)) = client.recv_from(buffer).await else {
                return Err(End::NoFirstDatagram);
            };
            let source_ip = source.ip().to_canonical();
            let admitted = match expected {
                None => true,
                Some(e) if e.ip().is_unspecified() || e.port() == 0 => {
                    e.ip().is_unspecified() || e.ip() == source_ip
                }
                Some(e) => e.ip() == source_ip && e.port() == source.port(),
            };
            if admitted {
                return Ok((length, source));
            }
        }
    }

    /// Relays from the first datagram (`length` bytes in `buffer`) on.
    async fn relay(
        &self,
        client: &UdpSocket,
        buffer: &mut [u8],
        length: usize,
        task: &mut TaskContext,
    ) -> Result<End, TaskError> {
        let datagram = |bytes: &[u8]| -> Result<(HostPort, usize), TaskError> {
            let (header, start) = socks5::parse_udp_header(bytes)
                .map_err(|e| TaskError::Client(format!("udp: {e}")))?;
            if header.fragment != 0 {
                return Err(TaskError::Client("udp fragments are not supported".into()));
            }
            Ok((header.target, start))
        };
        let (first_target, start) = datagram(&buffer[..length])?;
        let associate = self.config.use_udp_associate
            || task
                .user
                .as_ref()
                .is_some_and(|u| u.config().socks_use_udp_associate);
        task.notes.udp = Some(Box::new(crate::task::UdpNotes {
            listen: client.local_addr().map_err(TaskError::ClientIo)?,
            client: client.peer_addr().map_err(TaskError::ClientIo)?,
            initial_peer: first_target.to_string(),
            connect: !associate,
        }));
        let request = Some(ProxyRequestType::SocksUdpAssociate);
        let permit = self.gate.permit_within(task, request, &first_target)?;
        // The association's site is its first datagram's target's (g3's initial peer).
        let _site_alive = self.gate.count_site(task, request, &first_target);
        let user = task.user.clone();
        let mut upload = DatagramLimiter::new(self.speed_limit, true).with_group(
            user.as_ref()
                .map(|u| u.group_udp_upload())
                .unwrap_or_default(),
        );
        let mut download = DatagramLimiter::new(self.speed_limit, false).with_group(
            user.as_ref()
                .map(|u| u.group_udp_download())
                .unwrap_or_default(),
        );
        // The first datagram opens the upstream side either way; it goes only if the
        // limits let it (a user's group-wide ones may be spent by its other sessions).
        let first = &buffer[start..length];
        let first_allowed = upload.admit(first.len());
        // Either the server or the user asks for "udp associate" (as g3 decides).
        let mut upstream = if associate {
            let mut relay = Box::new(UdpRelay::new(self.escaper.clone()));
            if first_allowed {
                relay.send_to(&permit, first).await?;
            }
            Upstream::Associate(relay)
        } else {
            let mut connected = self.escaper.udp_connect(task, &permit).await?;
            if first_allowed {
                connected.send(first).await.map_err(TaskError::UpstreamIo)?;
            }
            Upstream::Connect(connected)
        };
        if first_allowed {
            task.notes.bytes_up += first.len() as u64;
            task.notes.packets_up += 1;
        }
        let mut from_upstream = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(MAX_DATAGRAM + 262);
        let mut ticker = tokio::time::interval(self.policy.idle_check_interval);
        ticker.tick().await;
        let (mut moved, mut idle_count) = (true, 0);
        let mut phase = self.phase.clone();
        let force_quit = async move {
            let _ = phase.wait_for(|p| *p == Phase::ForceQuit).await;
        };
        tokio::pin!(force_quit);
        loop {
            tokio::select! {
                received = client.recv(buffer) => {
                    let length = received.map_err(TaskError::ClientIo)?;
                    let (target, start) = datagram(&buffer[..length])?;
                    if !upload.admit(length - start) {
                        continue;
                    }
                    match &mut upstream {
                        Upstream::Connect(connected) => {
                            if target != first_target {
                                return Err(TaskError::Client(format!(
                                    "udp connect session to {first_target} got a datagram for {target}"
                                )));
                            }
                            connected.send(&buffer[start..length]).await.map_err(TaskError::UpstreamIo)?;
                        }
                        Upstream::Associate(relay) => {
                            // Each target passes the user's filters, as the first did.
                            let permit = self.gate.permit_within(task, request, &target)?;
                            relay.send_to(&permit, &buffer[start..length]).await?
                        }
                    }
                    task.notes.bytes_up += (length - start) as u64;
                    task.notes.packets_up += 1;
                    moved = true;
                }
                received = upstream.recv(&mut from_upstream) => {
                    let (length, source) = received.map_err(TaskError::UpstreamIo)?;
                    if !download.admit(length) {
                        continue;
                    }
                    out.clear();
                    // In "udp connect" mode the source is the target as the client named it.
                    socks5::encode_udp_header_for(source.as_ref().unwrap_or(&first_target), &mut out);
                    out.extend_from_slice(&from_upstream[..length]);
                    client.send(&out).await.map_err(TaskError::ClientIo)?;
                    task.notes.bytes_down += length as u64;
                    task.notes.packets_down += 1;
                    moved = true;
                }
                _ = ticker.tick() => {
                    if let Some(user) = task.user.as_ref().filter(|u| u.is_blocked()) {
                        return Err(TaskError::Policy(Forbidden::UserBlocked(user.name.to_string())));
                    }
                    if moved {
                        (moved, idle_count) = (false, 0);
                    } else {
                        idle_count += 1;
                        if idle_count >= self.policy.idle_max_count {
                            return Ok(End::Idle);
                        }
                    }
                }
                _ = &mut force_quit => return Ok(End::ForceQuit),
            }
        }
    }
}

enum Upstream {
    Connect(UdpConnected),
    Associate(Box<UdpRelay>),
}

impl Upstream {
    /// A datagram's payload length, and its source in "udp associate" mode.
    async fn recv(&mut self, buffer: &mut [u8]) -> std::io::Result<(usize, Option<HostPort>)> {
        match self {
            Upstream::Connect(connected) => Ok((connected.recv(buffer).await?, None)),
            Upstream::Associate(relay) => {
                let (length, source) = relay.recv_from(buffer).await?;
                Ok((length, Some(source)))
            }
        }
    }
}
