//! UDP ways out. A datagram's escaper either sends it itself, from a socket of its own to
//! the resolved and checked target ([`EscaperOps::udp_target`], [`EscaperOps::udp_bind`]),
//! or hands it to a next hop that relays UDP: a SOCKS5 proxy's UDP ASSOCIATE
//! ([`EscaperOps::udp_associate`], a [`PeerAssociation`]), where the target travels in each
//! datagram's header, as a name when the client gave one.
//!
//! Servers see two shapes: [`Escaper::udp_connect`] for a session fixed to one target (g3's
//! "udp connect"), and [`UdpRelay`] for a target per datagram (g3's "udp associate").

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use g3proxy_proto::socks5;
use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::types::SpeedLimit;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use super::{Escaper, EscaperOps};
use crate::auth::Permit;
use crate::conn::Stream;
use crate::error::TaskError;
use crate::relay::DatagramLimiter;
use crate::task::TaskContext;

/// Where the escaper a datagram routes to sends it.
enum UdpWay {
    /// From a socket of ours, to this address.
    Direct(SocketAddr),
    /// Through a next hop's relay.
    Peer(Box<PeerAssociation>),
}

impl Escaper {
    /// The escaper a datagram for the permit's target goes through (after the routes), and
    /// the way it goes.
    async fn udp_route(&self, permit: &Permit<'_>) -> Result<(&Escaper, UdpWay), TaskError> {
        let escaper = self.route(&self.leg(permit)).await?;
        Ok((escaper, escaper.udp_way(permit).await?))
    }

    /// This escaper's way for a datagram to the permit's target.
    async fn udp_way(&self, permit: &Permit<'_>) -> Result<UdpWay, TaskError> {
        let leg = self.connect_leg(permit);
        let way = match self.runtime.udp_associate(&leg).await {
            Some(association) => association.map(|a| UdpWay::Peer(Box::new(a))),
            None => self.runtime.udp_target(&leg).await.map(UdpWay::Direct),
        };
        way.map_err(|e| self.explain(e))
    }

    fn udp_bind(&self, address: SocketAddr) -> Result<LimitedSocket, TaskError> {
        self.runtime.udp_bind(address).map_err(|e| self.explain(e))
    }

    /// The upstream side of a session fixed to the permit's target, checked and resolved
    /// (or associated with the next hop) once.
    pub async fn udp_connect(
        &self,
        task: &mut TaskContext,
        permit: &Permit<'_>,
    ) -> Result<UdpConnected, TaskError> {
        let (escaper, way) = self.udp_route(permit).await?;
        task.notes.escaper = Some(escaper.name.clone());
        match way {
            UdpWay::Direct(address) => {
                let socket = escaper.udp_bind(address)?;
                socket
                    .socket
                    .connect(address)
                    .await
                    .map_err(TaskError::from_connect)?;
                task.notes.next_hop = Some(address);
                task.notes.bound = socket.socket.local_addr().ok();
                Ok(UdpConnected::Socket(socket))
            }
            UdpWay::Peer(association) => {
                task.notes.next_hop = Some(association.relay);
                task.notes.bound = association.socket.socket.local_addr().ok();
                Ok(UdpConnected::Peer(association, permit.target().clone()))
            }
        }
    }
}

/// A session's upstream side fixed to one target.
pub enum UdpConnected {
    /// Our socket, connected to the target.
    Socket(LimitedSocket),
    /// A next hop's association, and the target every datagram names.
    Peer(Box<PeerAssociation>, HostPort),
}

impl UdpConnected {
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        match self {
            UdpConnected::Socket(socket) => socket.send_to(payload, None).await,
            UdpConnected::Peer(association, target) => association.send_to(target, payload).await,
        }
    }

    /// The next datagram from the target (its payload only).
    pub async fn recv(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| match self {
            UdpConnected::Socket(socket) => socket.poll_recv_from(cx, buffer).map_ok(|(n, _)| n),
            UdpConnected::Peer(association, _) => {
                association.poll_recv(cx, buffer).map_ok(|(n, _)| n)
            }
        })
        .await
    }
}

/// Datagrams to a target each (g3's "udp associate"). Each goes by the escaper its target
/// routes to: our own sockets, one per address family, made when the first datagram of
/// that family goes out (later ones of that family leave from the same socket, wherever
/// they route); or an association with a next hop, one per escaper, made when the first
/// datagram goes there.
pub struct UdpRelay {
    escaper: Arc<Escaper>,
    v4: Option<LimitedSocket>,
    v6: Option<LimitedSocket>,
    peers: Vec<(Arc<str>, Box<PeerAssociation>)>,
}

impl UdpRelay {
    pub fn new(escaper: Arc<Escaper>) -> UdpRelay {
        UdpRelay {
            escaper,
            v4: None,
            v6: None,
            peers: Vec::new(),
        }
    }

    pub async fn send_to(&mut self, permit: &Permit<'_>, payload: &[u8]) -> Result<(), TaskError> {
        let escaper = self.escaper.route(&self.escaper.leg(permit)).await?;
        let target = permit.target();
        if let Some((_, association)) = self
            .peers
            .iter_mut()
            .find(|(name, _)| *name == escaper.name)
        {
            return (association.send_to(target, payload).await).map_err(TaskError::UpstreamIo);
        }
        let address = match escaper.udp_way(permit).await? {
            UdpWay::Direct(address) => address,
            UdpWay::Peer(mut association) => {
                let sent = association.send_to(target, payload).await;
                self.peers.push((escaper.name.clone(), association));
                return sent.map_err(TaskError::UpstreamIo);
            }
        };
        let slot = match address.is_ipv4() {
            true => &mut self.v4,
            false => &mut self.v6,
        };
        if slot.is_none() {
            *slot = Some(escaper.udp_bind(address)?);
        }
        let socket = slot
            .as_mut()
            .ok_or_else(|| TaskError::Internal("no socket".into()))?;
        socket
            .send_to(payload, Some(address))
            .await
            .map_err(TaskError::UpstreamIo)
    }

    /// The next datagram from any target, and where it came from.
    pub async fn recv_from(&mut self, buffer: &mut [u8]) -> io::Result<(usize, HostPort)> {
        std::future::poll_fn(|cx| {
            for socket in [&mut self.v4, &mut self.v6].into_iter().flatten() {
                if let Poll::Ready(received) = socket.poll_recv_from(cx, buffer) {
                    return Poll::Ready(received.map(|(length, source)| {
                        let host = Host::Ip(source.ip().to_canonical());
                        (
                            length,
                            HostPort {
                                host,
                                port: source.port(),
                            },
                        )
                    }));
                }
            }
            for (_, association) in &mut self.peers {
                if let Poll::Ready(received) = association.poll_recv(cx, buffer) {
                    return Poll::Ready(received);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// A socket toward targets or a next hop's relay, with the escaper's `udp_sock_speed_limit`
/// on each direction: a datagram over it is dropped, as g3 drops them.
pub struct LimitedSocket {
    socket: UdpSocket,
    /// Up and down; boxed, as most escapers set no limit.
    limits: Option<Box<[DatagramLimiter; 2]>>,
}

impl LimitedSocket {
    pub fn new(socket: UdpSocket, limit: Option<&SpeedLimit>) -> LimitedSocket {
        let limits = limit.filter(|l| !l.is_unlimited()).map(|limit| {
            Box::new([
                DatagramLimiter::new(Some(limit), true),
                DatagramLimiter::new(Some(limit), false),
            ])
        });
        LimitedSocket { socket, limits }
    }

    /// Sends `datagram` to `target`, or where the socket is connected; over the limit it is
    /// dropped, which is no error.
    async fn send_to(&mut self, datagram: &[u8], target: Option<SocketAddr>) -> io::Result<()> {
        if let Some([up, _]) = self.limits.as_deref_mut()
            && !up.admit(datagram.len())
        {
            return Ok(());
        }
        match target {
            Some(target) => self.socket.send_to(datagram, target).await,
            None => self.socket.send(datagram).await,
        }
        .map(|_| ())
    }

    /// The next datagram within the limit, and its source.
    fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            let mut read = ReadBuf::new(&mut *buffer);
            let source = std::task::ready!(self.socket.poll_recv_from(cx, &mut read))?;
            let length = read.filled().len();
            let admitted = match self.limits.as_deref_mut() {
                Some([_, down]) => down.admit(length),
                None => true,
            };
            if admitted {
                return Poll::Ready(Ok((length, source)));
            }
        }
    }
}

/// A UDP association with a SOCKS5 next hop (RFC 1928 section 7): the TCP connection it
/// lives on, and our socket connected to the relay address it announced. Datagrams carry
/// their target in a SOCKS header each way.
pub struct PeerAssociation {
    /// The association ends with it (see [`PeerAssociation::poll_recv`]).
    control: Stream,
    /// Whether its end is still looked for (not after an early end that was let go).
    watching: bool,
    /// `end_on_control_closed`: the control connection's end is the association's even
    /// before anything came back.
    end_on_control_closed: bool,
    /// Something came back: from now on the control connection's end is the association's.
    answered: bool,
    socket: LimitedSocket,
    pub relay: SocketAddr,
    /// The datagram being sent: header and payload.
    out: Vec<u8>,
}

impl PeerAssociation {
    pub fn new(
        control: Stream,
        socket: LimitedSocket,
        relay: SocketAddr,
        end_on_control_closed: bool,
    ) -> PeerAssociation {
        PeerAssociation {
            control,
            watching: true,
            end_on_control_closed,
            answered: false,
            socket,
            relay,
            out: Vec::new(),
        }
    }

    async fn send_to(&mut self, target: &HostPort, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        socks5::encode_udp_header_for(target, &mut self.out);
        self.out.extend_from_slice(payload);
        self.socket.send_to(&self.out, None).await
    }

    /// The next whole datagram's payload (moved to the start of `buffer`) and its source;
    /// a fragment or a malformed header is dropped.
    ///
    /// The control connection's end is an error (the next hop ended the association) once a
    /// datagram came back, or always with `end_on_control_closed`; before, it is let go, as
    /// g3 lets it go for next hops that close it early. A few stray bytes on it are read
    /// and ignored, a longer message is an error.
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<(usize, HostPort)>> {
        while self.watching
            && let Poll::Ready(ready) = self.control.poll_readable(cx)
        {
            let mut stray = [0u8; 4];
            match ready.and_then(|()| self.control.try_read(&mut stray)) {
                // Readiness cleared: poll again, for the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // Kept open on our side all the same: closing it would end the association.
                Ok(0) if !self.end_on_control_closed && !self.answered => self.watching = false,
                Ok(n) if n > 0 && n < stray.len() => continue,
                Ok(_) | Err(_) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!(
                            "the next-hop SOCKS5 proxy ended the UDP association of {}",
                            self.relay
                        ),
                    )));
                }
            }
        }
        loop {
            let (length, _) = std::task::ready!(self.socket.poll_recv_from(cx, buffer))?;
            let Ok((header, start)) = socks5::parse_udp_header(&buffer[..length]) else {
                continue;
            };
            if header.fragment != 0 {
                continue;
            }
            self.answered = true;
            buffer.copy_within(start..length, 0);
            return Poll::Ready(Ok((length - start, header.target)));
        }
    }
}
