//! `type: socks_proxy`: SOCKS5 CONNECT. Negotiate within `negotiation_timeout`, connect through
//! the escaper, answer with the bound address, then hand both sockets to the shared relay.
//! Only the no-authentication method is offered until user groups arrive.

use std::sync::Arc;

use g3proxy_proto::Parsed;
use g3proxy_proto::socks5::{self, Command, Reply};
use g3proxy_shared::config::servers::SocksProxyConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::{Context, ServerCounters};
use crate::debug;
use crate::error::TaskError;
use crate::escapers::Escaper;
use crate::relay::{self, RelayLimits, read_buf, write_all};

pub struct SocksProxyServer {
    pub config: SocksProxyConfig,
    escaper: Arc<Escaper>,
    pub counters: Arc<ServerCounters>,
    limits: RelayLimits,
}

impl SocksProxyServer {
    pub fn new(
        config: SocksProxyConfig,
        escaper: Arc<Escaper>,
        counters: Arc<ServerCounters>,
    ) -> Self {
        let limits = super::relay_limits(
            config.task_idle_check_interval.0,
            config.task_idle_max_count,
            config.tcp_copy_buffer_size.0,
        );
        SocksProxyServer {
            config,
            escaper,
            counters,
            limits,
        }
    }

    pub async fn serve(&self, client: TcpStream, context: &Context) {
        let _ = client.set_nodelay(true);
        if let Err(error) = self.run(&client, context).await {
            error.log(&self.counters.name, client.peer_addr().ok());
        }
    }

    async fn run(&self, client: &TcpStream, context: &Context) -> Result<(), TaskError> {
        let deadline = Instant::now() + self.config.negotiation_timeout.0;
        let mut buffer = Vec::new();
        let methods = read_message(client, &mut buffer, deadline, socks5::parse_greeting).await?;
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
        let request = match read_message(client, &mut buffer, deadline, socks5::parse_request).await
        {
            Ok(request) => request,
            Err(error) => {
                let reply = match &error {
                    TaskError::ClientSocks(e) => e.reply(),
                    _ => Reply::GeneralFailure,
                };
                let _ = write_all(client, &socks5::encode_reply(reply, None)).await;
                return Err(error);
            }
        };
        if request.command != Command::Connect {
            let _ = write_all(
                client,
                &socks5::encode_reply(Reply::CommandNotSupported, None),
            )
            .await;
            return Err(TaskError::Client(format!(
                "unsupported command {:?}",
                request.command
            )));
        }
        let upstream = match self.escaper.connect(&request.target).await {
            Ok(upstream) => upstream,
            Err(error) => {
                let _ = write_all(client, &socks5::encode_reply(error.socks_reply(), None)).await;
                return Err(error);
            }
        };
        let bound = upstream.local_addr().ok();
        write_all(client, &socks5::encode_reply(Reply::Succeeded, bound))
            .await
            .map_err(TaskError::ClientIo)?;
        if !buffer.is_empty() {
            write_all(&upstream, &buffer)
                .await
                .map_err(TaskError::UpstreamIo)?;
        }
        drop(buffer);
        let outcome =
            relay::relay_tunnel(client, &upstream, self.limits, context.phase.clone()).await;
        debug!(
            "server {}: tunnel to {} ended: {outcome}",
            self.counters.name, request.target
        );
        Ok(())
    }
}

/// Reads until `parse` accepts a whole message, leaving any later bytes in `buffer`.
async fn read_message<T>(
    client: &TcpStream,
    buffer: &mut Vec<u8>,
    deadline: Instant,
    parse: fn(&[u8]) -> Result<Parsed<T>, socks5::Socks5Error>,
) -> Result<T, TaskError> {
    loop {
        if let Parsed::Complete(message, used) = parse(buffer).map_err(TaskError::ClientSocks)? {
            buffer.drain(..used);
            return Ok(message);
        }
        match tokio::time::timeout_at(deadline, read_buf(client, buffer)).await {
            Ok(Ok(0)) => return Err(TaskError::Client("closed during negotiation".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(TaskError::ClientIo(e)),
            Err(_) => return Err(TaskError::ClientTimeout("socks negotiation")),
        }
    }
}
