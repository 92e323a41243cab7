//! Escapers: how a task reaches its upstream. An escaper is a set of operations every server
//! uses the same way: [`Escaper::tcp_connect`] (the stream, and what it went through: next hop
//! and bound address, noted on the task), [`Escaper::tls_connect`] on top of it, and for UDP
//! [`Escaper::udp_connect`] (one target) and [`UdpRelay`] (a target per datagram). Route
//! escapers (a later issue) add a step that picks another escaper per task; proxy escapers add
//! the absolute-form HTTP forward mode and UDP through a peer.
//!
//! One file per config `type`, one line in [`escaper_runtimes!`]. A name that a server or
//! route refers to but the config lacks gets [`Escaper::DenyAll`], as g3proxy's `DummyDeny`.

mod direct_fixed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::EscaperConfig;
use g3proxy_shared::config::escapers::EscaperType;
use g3proxy_shared::config::tls::TlsClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::UdpSocket;

use crate::conn::Stream;
use crate::error::{Forbidden, TaskError};
use crate::resolvers::Resolver;
use crate::task::TaskContext;

/// An upstream connection and what it went through.
pub struct Connected {
    pub stream: Stream,
    /// The address connected to: the target itself, or a next-hop proxy.
    pub next_hop: SocketAddr,
    /// Our end of it.
    pub bound: SocketAddr,
}

macro_rules! escaper_runtimes {
    ($($variant:ident => $runtime:ty;)*) => {
        pub enum EscaperRuntime {
            $($variant($runtime),)*
            DenyAll,
        }

        impl EscaperRuntime {
            fn build(
                config: &EscaperConfig,
                resolvers: &HashMap<String, Arc<Resolver>>,
            ) -> anyhow::Result<EscaperRuntime> {
                Ok(match &config.escaper_type {
                    $(EscaperType::$variant(own) => {
                        EscaperRuntime::$variant(<$runtime>::build(own, resolvers)?)
                    })*
                })
            }
        }
    };
}

escaper_runtimes! {
    DirectFixed => direct_fixed::DirectFixedEscaper;
}

pub struct Escaper {
    pub name: Arc<str>,
    runtime: EscaperRuntime,
}

impl Escaper {
    pub fn build(
        config: &EscaperConfig,
        resolvers: &HashMap<String, Arc<Resolver>>,
    ) -> anyhow::Result<Escaper> {
        Ok(Escaper {
            name: config.name().into(),
            runtime: EscaperRuntime::build(config, resolvers)?,
        })
    }

    /// The stand-in for an escaper the config names but lacks.
    pub fn deny_all(name: &str) -> Escaper {
        Escaper {
            name: name.into(),
            runtime: EscaperRuntime::DenyAll,
        }
    }

    /// What a deny-all stand-in answers to every operation.
    fn denied(&self) -> TaskError {
        TaskError::Policy(Forbidden::MissingEscaper(self.name.to_string()))
    }

    /// Opens a TCP connection toward `target` and notes on the task how it went.
    pub async fn tcp_connect(
        &self,
        task: &mut TaskContext,
        target: &HostPort,
    ) -> Result<Connected, TaskError> {
        let connected = match &self.runtime {
            EscaperRuntime::DirectFixed(e) => e.tcp_connect(target).await?,
            EscaperRuntime::DenyAll => return Err(self.denied()),
        };
        task.notes.escaper = Some(self.name.clone());
        task.notes.next_hop = Some(connected.next_hop);
        task.notes.bound = Some(connected.bound);
        Ok(connected)
    }

    /// Where a datagram for `target` goes, after resolution and the egress filter.
    async fn udp_target(&self, target: &HostPort) -> Result<SocketAddr, TaskError> {
        match &self.runtime {
            EscaperRuntime::DirectFixed(e) => e.udp_target(target).await,
            EscaperRuntime::DenyAll => Err(self.denied()),
        }
    }

    fn udp_bind(&self, target: SocketAddr) -> Result<UdpSocket, TaskError> {
        match &self.runtime {
            EscaperRuntime::DirectFixed(e) => e.udp_bind(target),
            EscaperRuntime::DenyAll => Err(self.denied()),
        }
    }

    /// A UDP socket connected to `target`, checked and resolved once (g3's "udp connect").
    pub async fn udp_connect(
        &self,
        task: &mut TaskContext,
        target: &HostPort,
    ) -> Result<UdpSocket, TaskError> {
        let address = self.udp_target(target).await?;
        let socket = self.udp_bind(address)?;
        socket
            .connect(address)
            .await
            .map_err(TaskError::from_connect)?;
        task.notes.escaper = Some(self.name.clone());
        task.notes.next_hop = Some(address);
        task.notes.bound = socket.local_addr().ok();
        Ok(socket)
    }

    /// A TCP connection as [`Escaper::tcp_connect`] opens it, then TLS to `target` with
    /// `config`; the certificate is checked against `tls_name`, or the target's host.
    pub async fn tls_connect(
        &self,
        task: &mut TaskContext,
        target: &HostPort,
        config: &TlsClientConfig,
        tls_name: Option<&str>,
    ) -> Result<Connected, TaskError> {
        let connected = self.tcp_connect(task, target).await?;
        let name = match (tls_name, &target.host) {
            (Some(name), _) => ServerName::try_from(name.to_string()),
            (None, Host::Domain(domain)) => ServerName::try_from(domain.clone()),
            (None, Host::Ip(ip)) => Ok(ServerName::IpAddress((*ip).into())),
        }
        .map_err(|e| TaskError::UpstreamTls(std::io::Error::other(e)))?;
        let Connected {
            stream,
            next_hop,
            bound,
        } = connected;
        let tcp = stream.into_tcp();
        let (stream, _facts) =
            Stream::connect_tls(tcp, config.rustls.clone(), name, config.handshake_timeout)
                .await
                .map_err(TaskError::UpstreamTls)?;
        Ok(Connected {
            stream,
            next_hop,
            bound,
        })
    }
}

/// Datagrams to a target each (g3's "udp associate"): one socket per address family, made
/// when the first datagram of that family goes out.
pub struct UdpRelay {
    escaper: Arc<Escaper>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl UdpRelay {
    pub fn new(escaper: Arc<Escaper>) -> UdpRelay {
        UdpRelay {
            escaper,
            v4: None,
            v6: None,
        }
    }

    pub async fn send_to(&mut self, target: &HostPort, payload: &[u8]) -> Result<(), TaskError> {
        let address = self.escaper.udp_target(target).await?;
        let slot = if address.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if slot.is_none() {
            *slot = Some(self.escaper.udp_bind(address)?);
        }
        let socket = slot
            .as_ref()
            .ok_or_else(|| TaskError::Internal("no socket".into()))?;
        socket
            .send_to(payload, address)
            .await
            .map(|_| ())
            .map_err(TaskError::UpstreamIo)
    }

    /// The next datagram from any target, and where it came from.
    pub async fn recv_from(&self, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        loop {
            let socket = match (&self.v4, &self.v6) {
                (Some(v4), Some(v6)) => tokio::select! {
                    ready = v4.readable() => { ready?; v4 }
                    ready = v6.readable() => { ready?; v6 }
                },
                (Some(socket), None) | (None, Some(socket)) => {
                    socket.readable().await?;
                    socket
                }
                (None, None) => std::future::pending().await,
            };
            match socket.try_recv_from(buffer) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                result => return result,
            }
        }
    }
}
