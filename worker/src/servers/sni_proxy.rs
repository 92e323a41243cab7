//! `type: sni_proxy`: TLS and plain HTTP on one port, passed on untouched. The first byte
//! tells them apart (a TLS handshake record starts with 22). The target host is the
//! ClientHello's server name, or the request's `Host` (or absolute URI); the port is the one
//! the client connected to, or the one `Host` names. `allowed_hosts` may refuse a host or
//! redirect it. Everything read to decide is replayed upstream as it came, then the shared
//! relay takes over.

use std::future::Future;
use std::sync::Arc;

use g3proxy_proto::http1::{self, HeadError};
use g3proxy_proto::tls_hello::{self, HelloError};
use g3proxy_proto::{Host, HostPort, Parsed};
use g3proxy_shared::config::servers::{AllowedHost, ServerCommon, ServerKind as _, SniProxyConfig};
use tokio::time::Instant;
use tracing::info;

use super::{BuildContext, ServeConnections};
use crate::auth::Gate;
use crate::conn::{self, ClientConn, ReadError, write_all_within};
use crate::context::{Context, TaskKind};
use crate::escapers::Escaper;
use crate::host_match::HostMatcher;
use crate::relay::RelayPolicy;
use crate::task::TaskContext;

/// A request head this large without an end is no request worth routing.
const HTTP_HEAD_MAX: usize = 64 << 10;

pub struct SniProxyServer {
    config: SniProxyConfig,
    context: Arc<Context>,
    escaper: Arc<Escaper>,
    /// Its facts group with `auth_by_*`, else open.
    gate: Gate,
    policy: RelayPolicy,
    /// `None`: every host is served.
    allowed: Option<HostMatcher<Arc<AllowedHost>>>,
}

/// Where a connection asked to go.
struct Wanted {
    host: Host,
    port: Option<u16>,
    tls: bool,
}

#[derive(Debug, thiserror::Error)]
enum SniffError {
    #[error("{0}")]
    Tls(HelloError),
    #[error("{0}")]
    Http(HeadError),
    #[error("no usable host in the request")]
    NoHost,
}

/// Reads the target from the start of a connection without consuming it.
fn sniff(bytes: &[u8], tls_max: usize) -> Result<Parsed<Wanted>, SniffError> {
    if bytes.first() == Some(&22) {
        return match tls_hello::parse(bytes, tls_max).map_err(SniffError::Tls)? {
            Parsed::Partial => Ok(Parsed::Partial),
            Parsed::Complete(hello, _) => {
                let name = hello.server_name.ok_or(SniffError::NoHost)?;
                let host = Host::parse_uri_host(&name).ok_or(SniffError::NoHost)?;
                Ok(Parsed::Complete(
                    Wanted {
                        host,
                        port: None,
                        tls: true,
                    },
                    0,
                ))
            }
        };
    }
    let head = match http1::parse_request(bytes).map_err(SniffError::Http)? {
        Parsed::Partial => return Ok(Parsed::Partial),
        Parsed::Complete(head, _) => head,
    };
    // An absolute URI names the target; otherwise `Host` does (RFC 9112 3.2). A path (even
    // one with a URI in its query) is no absolute URI.
    let authority = if head.target.starts_with('/') || head.target == "*" {
        let host = head.header("host").ok_or(SniffError::NoHost)?;
        String::from_utf8_lossy(host).trim().to_string()
    } else {
        let (scheme, rest) = head.target.split_once("://").ok_or(SniffError::NoHost)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(SniffError::NoHost);
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Credentials make an authority ambiguous.
        if authority.contains('@') {
            return Err(SniffError::NoHost);
        }
        authority.to_string()
    };
    let wanted = match HostPort::parse_authority(&authority, None) {
        Some(with_port) => Wanted {
            host: with_port.host,
            port: Some(with_port.port),
            tls: false,
        },
        None => Wanted {
            host: Host::parse_uri_host(&authority).ok_or(SniffError::NoHost)?,
            port: None,
            tls: false,
        },
    };
    Ok(Parsed::Complete(wanted, 0))
}

impl ServeConnections for SniProxyServer {
    type Config = SniProxyConfig;

    const KIND: TaskKind = TaskKind::Stream;

    fn build(
        common: &ServerCommon,
        config: &SniProxyConfig,
        cx: &BuildContext,
    ) -> anyhow::Result<Self> {
        let allowed = config
            .allowed_hosts
            .as_ref()
            .map(|hosts| HostMatcher::build(hosts, |host| Arc::new(host.clone())));
        Ok(SniProxyServer {
            config: config.clone(),
            context: cx.context.clone(),
            escaper: cx.escaper(&config.escaper),
            gate: cx.facts_gate(config.user_group.as_deref(), config.facts_auth()),
            policy: super::relay_policy(common),
            allowed,
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
            let Some(wanted) = self.read_target(&mut conn, &task).await else {
                return;
            };
            let Some(target) = self.allowed_target(&wanted, &conn, &task).await else {
                return;
            };
            let way = super::Way {
                gate: &self.gate,
                escaper: &self.escaper,
                policy: &self.policy,
                context: &self.context,
            };
            // The name the client asked for, before any redirect_host.
            way.tunnel(conn, &mut task, &target, Some(&wanted.host))
                .await;
        }
    }
}

impl SniProxyServer {
    /// The host and port the connection asks for, within the two timeouts; `None` (logged)
    /// when it sends nothing usable.
    async fn read_target(&self, conn: &mut ClientConn, task: &TaskContext) -> Option<Wanted> {
        let first_byte = |bytes: &[u8]| -> Result<Parsed<()>, std::convert::Infallible> {
            Ok(match bytes.is_empty() {
                true => Parsed::Partial,
                false => Parsed::Complete((), 0),
            })
        };
        let waited = Instant::now() + self.config.request_wait_timeout.0;
        if conn::read_until(&conn.stream, &mut conn.buffer, 1, waited, first_byte)
            .await
            .is_err()
        {
            return None;
        }
        let tls_max = self.config.tls_max_client_hello_size.0 as usize;
        let max = if conn.buffer.first() == Some(&22) {
            tls_max
        } else {
            HTTP_HEAD_MAX
        };
        let deadline = Instant::now() + self.config.request_recv_timeout.0;
        let read = conn::read_until(&conn.stream, &mut conn.buffer, max, deadline, |bytes| {
            sniff(bytes, tls_max)
        });
        match read.await {
            Ok(wanted) => Some(wanted),
            Err(error) => {
                let why = match error {
                    ReadError::Invalid(e) => e.to_string(),
                    ReadError::TooLarge => "the ClientHello or request head is too large".into(),
                    ReadError::Closed { .. } => "closed before a whole ClientHello or head".into(),
                    ReadError::TimedOut => "no whole ClientHello or head in time".into(),
                    ReadError::Io(e) => e.to_string(),
                };
                info!(
                    "server {}: task {} client {}: {why}",
                    task.server_name(),
                    task.id,
                    task.client_addr
                );
                None
            }
        }
    }

    /// Where the connection goes after `allowed_hosts`: its own target, a redirect, or
    /// nowhere (refused, logged; a plain HTTP client gets a 403).
    async fn allowed_target(
        &self,
        wanted: &Wanted,
        conn: &ClientConn,
        task: &TaskContext,
    ) -> Option<HostPort> {
        let port = wanted.port.unwrap_or(conn.local_addr.port());
        let Some(allowed) = &self.allowed else {
            return Some(HostPort {
                host: wanted.host.clone(),
                port,
            });
        };
        let Some(site) = allowed.get(&wanted.host.to_string()) else {
            info!(
                "server {}: task {} client {}: host {} is not in allowed_hosts",
                task.server_name(),
                task.id,
                task.client_addr,
                wanted.host
            );
            if !wanted.tls {
                let refusal =
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = write_all_within(&conn.stream, refusal, self.policy.idle_timeout()).await;
            }
            return None;
        };
        // The loader checked that a redirect_host parses.
        let host = match site.redirect_host.as_deref().and_then(Host::parse_uri_host) {
            Some(redirect) => redirect,
            None => wanted.host.clone(),
        };
        Some(HostPort {
            host,
            port: site.redirect_port.unwrap_or(port),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(bytes: &[u8]) -> Option<(String, Option<u16>, bool)> {
        match sniff(bytes, 1 << 16) {
            Ok(Parsed::Complete(w, 0)) => Some((w.host.to_string(), w.port, w.tls)),
            _ => None,
        }
    }

    #[test]
    fn targets_from_hello_host_and_uri() {
        let hello = tls_hello::encode_client_hello(Some("Example.NET"), &[], 64);
        assert_eq!(host_of(&hello), Some(("example.net".into(), None, true)));
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
            Some(("a.example".into(), Some(8080), false))
        );
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Some(("a.example".into(), None, false))
        );
        assert_eq!(
            host_of(b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Some(("b.example".into(), None, false))
        );
        assert_eq!(
            host_of(b"GET /r?u=http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Some(("a.example".into(), None, false))
        );
        assert_eq!(
            host_of(b"GET http://b.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Some(("b.example".into(), None, false))
        );
        assert!(matches!(
            sniff(
                b"GET http://u@b.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
                1 << 16
            ),
            Err(SniffError::NoHost)
        ));
        assert!(matches!(
            sniff(b"GET ftp://b.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 1 << 16),
            Err(SniffError::NoHost)
        ));
        // No name to route by: refused, never guessed.
        let anonymous = tls_hello::encode_client_hello(None, &[], 1 << 14);
        assert!(matches!(
            sniff(&anonymous, 1 << 16),
            Err(SniffError::NoHost)
        ));
        assert!(matches!(
            sniff(b"GET / HTTP/1.1\r\n\r\n", 1 << 16),
            Err(SniffError::NoHost)
        ));
        assert!(matches!(
            sniff(b"GET / HTTP/1.1\r\n", 1 << 16),
            Ok(Parsed::Partial)
        ));
        // Split anywhere, a hello is only complete at its end.
        for cut in 1..hello.len() {
            assert!(
                matches!(sniff(&hello[..cut], 1 << 16), Ok(Parsed::Partial)),
                "{cut}"
            );
        }
    }
}
