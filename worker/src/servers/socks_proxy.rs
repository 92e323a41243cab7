//! `type: socks_proxy`: SOCKS5 CONNECT and UDP ASSOCIATE (`socks_proxy_udp.rs`), and
//! SOCKS4/4a CONNECT (the first byte says which).
//! Negotiate within `negotiation_timeout`, connect through the escaper, answer with the bound
//! address, then hand both streams to the shared relay. With a `user_group`, a client that
//! offers username/password (RFC 1929) must log in; one that does not gets in only as the
//! group's anonymous user, and so does SOCKS4.

use std::future::Future;
use std::sync::Arc;

use g3proxy_proto::socks4;
use g3proxy_proto::socks5::{self, Command, Reply};
use g3proxy_shared::config::servers::{ServerCommon, SocksProxyConfig};
use g3proxy_shared::types::acl::ProxyRequestType;
use g3proxy_shared::types::{NetworkAcl, SpeedLimit};
use tokio::time::Instant;

use super::socks_proxy_udp::UdpSession;
use super::{BuildContext, ServeConnections};
use crate::auth::{Gate, Login};
use crate::conn::{self, ClientConn, ReadError, write_all};
use crate::context::{Context, TaskKind};
use crate::error::{AuthFailure, TaskError};
use crate::escapers::{Connected, Escaper};
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

pub struct SocksProxyServer {
    config: SocksProxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    gate: Gate,
    policy: RelayPolicy,
    /// Checked again against the source of a UDP session's first datagram.
    ingress: Option<NetworkAcl>,
    udp_speed_limit: Option<SpeedLimit>,
}

/// SOCKS messages are small: a request is at most 262 bytes.
const MAX_MESSAGE: usize = 1024;

impl ServeConnections for SocksProxyServer {
    type Config = SocksProxyConfig;

    const KIND: TaskKind = TaskKind::SocksTcp;

    fn build(
        common: &ServerCommon,
        config: &SocksProxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        Ok(SocksProxyServer {
            config: config.clone(),
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.gate(config.user_group.as_deref()),
            policy: super::relay_policy(common),
            ingress: common.ingress_network_filter.clone(),
            udp_speed_limit: common.udp_sock_speed_limit.filter(|l| !l.is_unlimited()),
        })
    }

    // Not an `async fn`, which would store its arguments twice in the future.
    #[allow(clippy::manual_async_fn)]
    fn serve(
        self: Arc<Self>,
        mut conn: ClientConn,
        mut task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Err(error) = self.run(&mut conn, &mut task).await {
                error.log(&task);
            }
        }
    }
}

/// What went wrong reading a SOCKS message; `invalid` words the parser's own refusal.
fn negotiation_error<E>(error: ReadError<E>, invalid: impl FnOnce(E) -> TaskError) -> TaskError {
    match error {
        ReadError::Invalid(e) => invalid(e),
        ReadError::TooLarge => TaskError::ClientHeadTooLarge,
        ReadError::Closed { .. } => TaskError::Client("closed during negotiation".into()),
        ReadError::TimedOut => TaskError::ClientTimeout("socks negotiation"),
        ReadError::Io(e) => TaskError::ClientIo(e),
    }
}

fn socks_error(error: ReadError<socks5::Socks5Error>) -> TaskError {
    negotiation_error(error, TaskError::ClientSocks)
}

impl SocksProxyServer {
    async fn run(&self, conn: &mut ClientConn, task: &mut TaskContext) -> Result<(), TaskError> {
        let deadline = Instant::now() + self.config.negotiation_timeout.0;
        let version = match conn::read_until(&conn.stream, &mut conn.buffer, 1, deadline, |bytes| {
            Ok::<_, socks5::Socks5Error>(match bytes.first() {
                Some(&version) => g3proxy_proto::Parsed::Complete(version, 0),
                None => g3proxy_proto::Parsed::Partial,
            })
        })
        .await
        {
            Ok(version) => version,
            // Connected and left without a byte: a port check, not a malformed request.
            Err(ReadError::Closed { clean: true }) => return Ok(()),
            Err(error) => return Err(socks_error(error)),
        };
        if version == socks4::VERSION {
            // SOCKS4 has no passwords: with users, only an anonymous user may use it, and
            // anyone else hears nothing (as g3 does).
            if !self.gate.takes_anonymous(task.client_addr.ip()) {
                return Err(TaskError::Auth(AuthFailure::NoCredentials));
            }
            // Boxed where it can wait (see `Gate::admit`), so idle tunnels do not carry it.
            if self.gate.has_users() {
                Box::pin(self.gate.admit(task, None)).await?;
            }
            return self.run_socks4(conn, task, deadline).await;
        }
        let client = &conn.stream;
        let methods = conn::read_until(
            client,
            &mut conn.buffer,
            MAX_MESSAGE,
            deadline,
            socks5::parse_greeting,
        )
        .await
        .map_err(socks_error)?;
        // With users, a client that can send a password must (as g3 chooses); one that
        // cannot gets in only as the anonymous user.
        let method = if !self.gate.has_users() {
            socks5::METHOD_NO_AUTH
        } else if methods.contains(&socks5::METHOD_USER_PASSWORD) {
            socks5::METHOD_USER_PASSWORD
        } else if self.gate.takes_anonymous(task.client_addr.ip()) {
            socks5::METHOD_NO_AUTH
        } else {
            socks5::METHOD_USER_PASSWORD
        };
        if !methods.contains(&method) {
            let _ = write_all(
                client,
                &socks5::encode_method_choice(socks5::METHOD_NONE_ACCEPTABLE),
            )
            .await;
            return Err(TaskError::Client(
                "no acceptable authentication method offered".into(),
            ));
        }
        write_all(client, &socks5::encode_method_choice(method))
            .await
            .map_err(TaskError::ClientIo)?;
        if method == socks5::METHOD_USER_PASSWORD {
            self.login(conn, task, deadline).await?;
        } else {
            // Boxed where it can wait (see `Gate::admit`), so idle tunnels do not carry it.
            if self.gate.has_users() {
                Box::pin(self.gate.admit(task, None)).await?;
            }
        }
        let client = &conn.stream;
        let request = match conn::read_until(
            client,
            &mut conn.buffer,
            MAX_MESSAGE,
            deadline,
            socks5::parse_request,
        )
        .await
        {
            Ok(request) => request,
            Err(error) => {
                let error = socks_error(error);
                let reply = match &error {
                    TaskError::ClientSocks(e) => e.reply(),
                    _ => Reply::GeneralFailure,
                };
                let _ = write_all(client, &socks5::encode_reply(reply, None)).await;
                return Err(error);
            }
        };
        match request.command {
            Command::Connect => {}
            Command::UdpAssociate => {
                task.set_kind(TaskKind::SocksUdp);
                // The relay checks each datagram's target; the request itself counts now,
                // and holds its place among the user's live requests for the session.
                let udp = Some(ProxyRequestType::SocksUdpAssociate);
                let _hold = match self.gate.hold_request(task, udp) {
                    Ok(hold) => hold,
                    Err(error) => {
                        let reply = socks5::encode_reply(error.socks_reply(), None);
                        let _ = write_all(client, &reply).await;
                        return Err(error);
                    }
                };
                // The user's limits and idle rule where it has its own.
                let server_limit = self.udp_speed_limit.as_ref();
                let udp_limit = match &task.user {
                    Some(user) => user.udp_speed_limit(server_limit),
                    None => server_limit.copied(),
                };
                let policy = self.policy.for_user(task.user.as_deref());
                let session = UdpSession {
                    config: &self.config,
                    escaper: &self.escaper,
                    gate: &self.gate,
                    policy: &policy,
                    ingress: self.ingress.as_ref(),
                    speed_limit: udp_limit.as_ref(),
                    phase: self.context.phase.clone(),
                };
                // The association is ready as its relay starts (g3's `request.ready`).
                task.count_ready(false);
                let udp = Box::pin(session.run(client, conn.local_addr, &request.target, task));
                return udp.await;
            }
            Command::Bind => {
                let _ = write_all(
                    client,
                    &socks5::encode_reply(Reply::CommandNotSupported, None),
                )
                .await;
                return Err(TaskError::Client("socks5 bind is not supported".into()));
            }
        }
        let refuse = |error: &TaskError| socks5::encode_reply(error.socks_reply(), None);
        let grant = |bound| socks5::encode_reply(Reply::Succeeded, Some(bound));
        self.connect_and_relay(conn, task, &request.target, refuse, grant)
            .await
    }

    /// RFC 1929: reads a user name and password and answers whether the gate admitted them.
    async fn login(
        &self,
        conn: &mut ClientConn,
        task: &mut TaskContext,
        deadline: Instant,
    ) -> Result<(), TaskError> {
        let client = &conn.stream;
        let credentials = conn::read_until(
            client,
            &mut conn.buffer,
            MAX_MESSAGE,
            deadline,
            socks5::parse_user_password,
        )
        .await
        .map_err(socks_error)?;
        let admitted = match std::str::from_utf8(&credentials.user) {
            Ok(user) => {
                let login = Login {
                    user,
                    password: &credentials.password,
                };
                Box::pin(self.gate.admit(task, Some(login))).await
            }
            Err(_) => Err(TaskError::Client("socks5 user name is not utf-8".into())),
        };
        // RFC 1929's answer in every case (a blocked user too, after its delay).
        let status = match admitted {
            Ok(()) => socks5::USER_PASSWORD_SUCCESS,
            Err(_) => socks5::USER_PASSWORD_FAILURE,
        };
        let written = write_all(client, &socks5::encode_user_password_status(status)).await;
        admitted?;
        written.map_err(TaskError::ClientIo)
    }

    /// SOCKS4 and SOCKS4a: CONNECT only; BIND is refused.
    async fn run_socks4(
        &self,
        conn: &mut ClientConn,
        task: &mut TaskContext,
        deadline: Instant,
    ) -> Result<(), TaskError> {
        let client = &conn.stream;
        let request = match conn::read_until(
            client,
            &mut conn.buffer,
            MAX_MESSAGE,
            deadline,
            socks4::parse_request,
        )
        .await
        {
            Ok(request) => request,
            Err(error) => {
                let _ =
                    write_all(client, &socks4::encode_reply(socks4::Reply::Rejected, None)).await;
                return Err(negotiation_error(error, |e| {
                    TaskError::Client(e.to_string())
                }));
            }
        };
        if request.command != socks4::Command::Connect {
            let _ = write_all(client, &socks4::encode_reply(socks4::Reply::Rejected, None)).await;
            return Err(TaskError::Client("socks4 bind is not supported".into()));
        }
        let refuse = |_: &TaskError| socks4::encode_reply(socks4::Reply::Rejected, None).to_vec();
        // SOCKS4 has room for an IPv4 address only.
        let grant = |bound: std::net::SocketAddr| {
            let bound = match bound {
                std::net::SocketAddr::V4(v4) => Some(v4),
                std::net::SocketAddr::V6(_) => None,
            };
            socks4::encode_reply(socks4::Reply::Granted, bound).to_vec()
        };
        self.connect_and_relay(conn, task, &request.target, refuse, grant)
            .await
    }

    /// A CONNECT of either SOCKS version: leave from the gate and the escaper's connection,
    /// answered with `grant(bound)` or `refuse(error)`, then the relay, with the user's place
    /// among its live requests held to the end.
    async fn connect_and_relay(
        &self,
        conn: &mut ClientConn,
        task: &mut TaskContext,
        target: &g3proxy_proto::HostPort,
        refuse: impl FnOnce(&TaskError) -> Vec<u8>,
        grant: impl FnOnce(std::net::SocketAddr) -> Vec<u8>,
    ) -> Result<(), TaskError> {
        let request_type = Some(ProxyRequestType::SocksTcpConnect);
        let (_permit, connected) =
            super::connect_permitted(&self.gate, &self.escaper, task, request_type, target).await;
        let upstream = match connected {
            Ok(upstream) => upstream,
            Err(error) => {
                let _ = write_all(&conn.stream, &refuse(&error)).await;
                return Err(error);
            }
        };
        write_all(&conn.stream, &grant(upstream.bound))
            .await
            .map_err(TaskError::ClientIo)?;
        self.relay(conn, task, upstream).await
    }

    /// Relays an established tunnel: bytes the client sent early go first.
    async fn relay(
        &self,
        conn: &mut ClientConn,
        task: &mut TaskContext,
        upstream: Connected,
    ) -> Result<(), TaskError> {
        let early = std::mem::take(&mut conn.buffer);
        super::tunnel(
            &conn.stream,
            early,
            &upstream.stream,
            task,
            &self.policy,
            &self.context,
        )
        .await
    }
}
