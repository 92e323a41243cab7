//! Escapers: how a task reaches its upstream. An escaper is a set of operations every server
//! uses the same way: [`Escaper::tcp_connect`] (the stream, and what it went through: next hop
//! and bound address, noted on the task), [`Escaper::tls_connect`] on top of it. Route
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

    /// Opens a TCP connection toward `target` and notes on the task how it went.
    pub async fn tcp_connect(
        &self,
        task: &mut TaskContext,
        target: &HostPort,
    ) -> Result<Connected, TaskError> {
        let connected = match &self.runtime {
            EscaperRuntime::DirectFixed(e) => e.tcp_connect(target).await?,
            EscaperRuntime::DenyAll => {
                return Err(TaskError::Policy(Forbidden::MissingEscaper(
                    self.name.to_string(),
                )));
            }
        };
        task.notes.escaper = Some(self.name.clone());
        task.notes.next_hop = Some(connected.next_hop);
        task.notes.bound = Some(connected.bound);
        Ok(connected)
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
