//! `type: socks_proxy`: SOCKS5 CONNECT and UDP ASSOCIATE (`socks_proxy_udp.rs`), and
//! SOCKS4/4a CONNECT (the first byte says which).
//! Negotiate within `negotiation_timeout`, connect through the escaper, answer with the bound
//! address, then hand both streams to the shared relay. Only the no-authentication method is
//! offered until user groups arrive (SOCKS4 will stay limited to the anonymous user).

use std::future::Future;
use std::sync::Arc;

use g3proxy_proto::socks4;
use g3proxy_proto::socks5::{self, Command, Reply};
use g3proxy_shared::config::servers::{ServerCommon, SocksProxyConfig};
use g3proxy_shared::types::{NetworkAcl, SpeedLimit};
use tokio::time::Instant;

use super::socks_proxy_udp::UdpSession;
use super::{BuildContext, ServeConnections};
use crate::conn::{self, ClientConn, ReadError, write_all};
use crate::context::{Context, TaskKind};
use crate::error::TaskError;
use crate::escapers::{Connected, Escaper};
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

pub struct SocksProxyServer {
    config: SocksProxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
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
        if !methods.contains(&socks5::METHOD_NO_AUTH) {
            let _ = write_all(
                client,
                &socks5::encode_method_choice(socks5::METHOD_NONE_ACCEPTABLE),
            )
            .await;
            return Err(TaskError::Client(
                "no acceptable authentication method offered".into(),
            ));
        }
        write_all(
            client,
            &socks5::encode_method_choice(socks5::METHOD_NO_AUTH),
        )
        .await
        .map_err(TaskError::ClientIo)?;
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
                let session = UdpSession {
                    config: &self.config,
                    escaper: &self.escaper,
                    policy: &self.policy,
                    ingress: self.ingress.as_ref(),
                    speed_limit: self.udp_speed_limit.as_ref(),
                    phase: self.context.phase.clone(),
                };
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
        let connect = Box::pin(self.escaper.tcp_connect(task, &request.target));
        let upstream = match connect.await {
            Ok(upstream) => upstream,
            Err(error) => {
                let _ = write_all(client, &socks5::encode_reply(error.socks_reply(), None)).await;
                return Err(error);
            }
        };
        write_all(
            client,
            &socks5::encode_reply(Reply::Succeeded, Some(upstream.bound)),
        )
        .await
        .map_err(TaskError::ClientIo)?;
        self.relay(conn, task, upstream).await
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
        let connect = Box::pin(self.escaper.tcp_connect(task, &request.target));
        let upstream = match connect.await {
            Ok(upstream) => upstream,
            Err(error) => {
                let _ =
                    write_all(client, &socks4::encode_reply(socks4::Reply::Rejected, None)).await;
                return Err(error);
            }
        };
        let bound = match upstream.bound {
            std::net::SocketAddr::V4(v4) => Some(v4),
            std::net::SocketAddr::V6(_) => None,
        };
        write_all(client, &socks4::encode_reply(socks4::Reply::Granted, bound))
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
