//! `type: proxy_socks5` and `type: proxy_socks5s` (the same over TLS, see `next_hop.rs`):
//! through a next-hop SOCKS5 proxy. A TCP connection is a SOCKS5 `CONNECT` (RFC 1928) with
//! username and password (RFC 1929) when `proxy_username` is set; target names go to the next
//! hop as names, for it to resolve. Every answer is read to its exact length, so what the
//! target sends right after the reply stays for the relay. HTTP requests are forwarded over
//! such a connection in origin form. UDP goes through the next hop's UDP ASSOCIATE (see
//! `udp.rs`): our socket is bound to the address our TCP connection to it came from, and
//! that address is what the request announces, so the next hop can admit only us.

use std::net::SocketAddr;

use g3proxy_proto::socks5::{self, Command};
use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::escapers::{
    DEFAULT_SOCKS_PROXY_PORT, ProxySocks5Config, Socks5PeerKeys,
};
use tokio::net::UdpSocket;

use super::next_hop::NextHop;
use super::{Connected, Dependencies, EscaperOps, Leg, LimitedSocket, PeerAssociation};
use crate::conn::{Stream, read_exact, sockopt, write_all_within};
use crate::error::TaskError;

pub struct ProxySocks5Escaper {
    next_hop: NextHop,
    /// RFC 1929's request with our credentials, when we have them.
    login: Option<Vec<u8>>,
    udp: Socks5PeerKeys,
}

impl ProxySocks5Escaper {
    /// `proxy_socks5`, or `proxy_socks5s` when the config has `tls`.
    pub fn build(config: &ProxySocks5Config, deps: &Dependencies) -> anyhow::Result<Self> {
        let next_hop = &config.next_hop;
        let login = match &next_hop.proxy_username {
            None => None,
            Some(user) => {
                let password = next_hop
                    .proxy_password
                    .as_ref()
                    .map_or("", |p| p.0.as_str());
                // The loader allows at most 255 bytes each.
                Some(
                    socks5::encode_user_password(user.as_bytes(), password.as_bytes()).ok_or_else(
                        || anyhow::anyhow!("proxy_username or proxy_password too long"),
                    )?,
                )
            }
        };
        Ok(ProxySocks5Escaper {
            next_hop: NextHop::build(
                next_hop,
                config.tls.as_ref(),
                DEFAULT_SOCKS_PROXY_PORT,
                deps,
            )?,
            login,
            udp: config.socks.clone(),
        })
    }

    /// The SOCKS5 exchange for `command` to `target` over `peer`; answers the address the
    /// next hop bound.
    async fn negotiate(
        &self,
        peer: &Stream,
        command: Command,
        target: &HostPort,
    ) -> Result<HostPort, TaskError> {
        let timeout = self.next_hop.negotiation_timeout();
        let send = |data: Vec<u8>| async move {
            write_all_within(peer, &data, timeout)
                .await
                .map_err(TaskError::UpstreamIo)
        };
        let protocol = |e: socks5::Socks5Error| {
            TaskError::UpstreamProtocol(format!("the next-hop SOCKS5 proxy: {e}"))
        };
        send(socks5::encode_greeting(self.login.is_some())).await?;
        let mut choice = [0u8; 2];
        read_exact(peer, &mut choice)
            .await
            .map_err(TaskError::UpstreamIo)?;
        match (
            socks5::parse_method_choice(choice).map_err(protocol)?,
            &self.login,
        ) {
            (socks5::METHOD_NO_AUTH, _) => {}
            (socks5::METHOD_USER_PASSWORD, Some(login)) => {
                send(login.clone()).await?;
                let mut status = [0u8; 2];
                read_exact(peer, &mut status)
                    .await
                    .map_err(TaskError::UpstreamIo)?;
                if !socks5::user_password_accepted(status) {
                    return Err(TaskError::next_hop_wants_credentials());
                }
            }
            _ => return Err(TaskError::next_hop_wants_credentials()),
        }
        let request = socks5::encode_request(command, target).ok_or_else(|| {
            TaskError::Client(format!("{}: a name too long for SOCKS5", target.host))
        })?;
        send(request).await?;
        let mut first = [0u8; 5];
        read_exact(peer, &mut first)
            .await
            .map_err(TaskError::UpstreamIo)?;
        let rest = socks5::reply_rest_len(first).map_err(protocol)?;
        let mut reply = vec![0u8; 5 + rest];
        reply[..5].copy_from_slice(&first);
        read_exact(peer, &mut reply[5..])
            .await
            .map_err(TaskError::UpstreamIo)?;
        match socks5::parse_reply(&reply).map_err(protocol)? {
            (0, bound) => Ok(bound),
            (code, _) => Err(refusal(code, target)),
        }
    }

    /// A UDP association with the next hop, over a fresh connection to it.
    async fn associate(&self, leg: &Leg<'_>) -> Result<PeerAssociation, TaskError> {
        let connected = self.next_hop.connect(leg).await?;
        let socket = UdpSocket::bind(SocketAddr::new(connected.bound.ip(), 0))
            .await
            .map_err(|e| TaskError::Internal(format!("udp bind {}: {e}", connected.bound.ip())))?;
        let ours = socket.local_addr().map_err(TaskError::UpstreamIo)?;
        let ours = HostPort {
            host: Host::Ip(ours.ip()),
            port: ours.port(),
        };
        let bound = tokio::time::timeout(
            self.next_hop.negotiation_timeout(),
            self.negotiate(&connected.stream, Command::UdpAssociate, &ours),
        )
        .await
        .map_err(|_| TaskError::UpstreamTimeout("SOCKS5 with the next-hop proxy"))??;
        let relay = match bound.host {
            Host::Ip(ip) => SocketAddr::new(
                (self.udp.transmute_udp_peer_ip).relay_ip(ip, connected.next_hop.ip()),
                bound.port,
            ),
            Host::Domain(name) => {
                return Err(TaskError::UpstreamProtocol(format!(
                    "the next-hop SOCKS5 proxy announced a name as its UDP relay: {name}"
                )));
            }
        };
        socket.connect(relay).await.map_err(TaskError::UpstreamIo)?;
        sockopt::apply_udp(&socket, relay, &self.udp.udp_misc_opts);
        Ok(PeerAssociation::new(
            connected.stream,
            LimitedSocket::new(socket, self.udp.udp_sock_speed_limit.as_ref()),
            relay,
            self.udp.end_on_control_closed,
        ))
    }
}

/// The task's error for a next hop's refusal, in the class its reply code names: the target
/// refused or unreachable as if we had tried it ourselves, anything else the next hop's.
fn refusal(code: u8, target: &HostPort) -> TaskError {
    let io = |kind: std::io::ErrorKind| {
        std::io::Error::new(
            kind,
            format!("through the next-hop SOCKS5 proxy to {target}"),
        )
    };
    match code {
        3 | 4 => return TaskError::UpstreamUnreachable(io(std::io::ErrorKind::HostUnreachable)),
        5 => return TaskError::UpstreamRefused(io(std::io::ErrorKind::ConnectionRefused)),
        6 => return TaskError::UpstreamConnectTimeout,
        _ => {}
    }
    let said = match code {
        2 => "not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "general failure",
    };
    TaskError::UpstreamProtocol(format!(
        "the next-hop SOCKS5 proxy could not connect to {target}: {said} ({code})"
    ))
}

impl EscaperOps for ProxySocks5Escaper {
    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        let connected = self.next_hop.connect(leg).await?;
        tokio::time::timeout(
            self.next_hop.negotiation_timeout(),
            self.negotiate(&connected.stream, Command::Connect, leg.target),
        )
        .await
        .map_err(|_| TaskError::UpstreamTimeout("SOCKS5 with the next-hop proxy"))??;
        Ok(connected)
    }

    async fn udp_associate(&self, leg: &Leg<'_>) -> Option<Result<PeerAssociation, TaskError>> {
        Some(self.associate(leg).await)
    }
}
