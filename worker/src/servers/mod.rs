//! Servers: accept loops on the sockets the supervisor handed over, and one task per client
//! connection. Every server type serves a [`ClientConn`] with a [`TaskContext`], so a port
//! (`plain_tcp_port`, `plain_tls_port`, `intelli_proxy`) can read a PROXY header or terminate
//! TLS and hand the same connection to the server it names.
//!
//! A new server type: its file here implementing [`ServeConnections`], and one line in
//! [`server_runtimes!`] below (and its config in `shared/src/config/servers/`).

mod dummy_close;
mod http_proxy;
mod http_rproxy;
mod intelli_proxy;
mod ports;
mod sni_proxy;
mod socks_proxy;
mod socks_proxy_udp;
mod tcp_stream;
mod tcp_tproxy;
mod tls_stream;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use g3proxy_proto::HostPort;
use g3proxy_shared::config::ServerConfig;
use g3proxy_shared::config::servers::{FactsMatch, ServerCommon, ServerType};
use g3proxy_shared::types::acl::ProxyRequestType;
use g3proxy_shared::types::{NetworkAcl, TcpMiscOpts};
use tokio::net::TcpListener;

use crate::auth::{Gate, Permit, UserGroup};
use crate::conn::{ClientConn, Stream, sockopt, write_all_within};
use crate::context::{Context, Phase, ServerCounters, TaskKind};
use crate::error::TaskError;
use crate::escapers::{Connected, Escaper};
use crate::relay::{self, RelayPolicy};
use crate::task::TaskContext;
use tracing::{info, warn};

/// What a server may refer to while it is built: escapers, and the servers built before it
/// (the config puts every server after those it hands connections to).
pub struct BuildContext<'a> {
    pub context: &'a Arc<Context>,
    pub escapers: &'a HashMap<String, Arc<Escaper>>,
    pub user_groups: &'a HashMap<String, Arc<UserGroup>>,
    pub servers: &'a HashMap<String, Arc<Server>>,
}

impl BuildContext<'_> {
    /// The gate of a server with `user_group` (an empty group, which admits nobody, when
    /// the config lacks it); an open gate without one.
    pub fn gate(&self, user_group: Option<&str>) -> Gate {
        Gate::new(self.user_group(user_group))
    }

    /// The gate of a stream server, which finds users by `facts` (its `auth_by_*`).
    pub fn facts_gate(&self, user_group: Option<&str>, facts: Option<FactsMatch>) -> Gate {
        Gate::by_facts(self.user_group(user_group), facts)
    }

    fn user_group(&self, name: Option<&str>) -> Option<Arc<UserGroup>> {
        name.map(|name| {
            self.user_groups
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::new(UserGroup::empty(name)))
        })
    }

    /// The escaper called `name`, or a deny-all stand-in when the config lacks it.
    pub fn escaper(&self, name: &str) -> Arc<Escaper> {
        Escaper::named(self.escapers, name)
    }

    /// The server called `name`, or a `dummy_close` stand-in when the config lacks it.
    pub fn server(&self, name: &str) -> Arc<Server> {
        self.servers.get(name).cloned().unwrap_or_else(|| {
            Arc::new(Server {
                counters: ServerCounters::new(name),
                ingress: None,
                misc_opts: TcpMiscOpts::default(),
                misc_opts_failed: AtomicBool::new(false),
                runtime: ServerRuntime::DummyClose(Arc::new(dummy_close::DummyClose)),
            })
        })
    }
}

/// One server type's runtime: built from its config, then serving connections.
pub trait ServeConnections: Sized + Send + Sync + 'static {
    type Config;

    /// What its tasks are, until a task says otherwise ([`TaskContext::set_kind`]).
    const KIND: TaskKind;

    fn build(
        common: &ServerCommon,
        config: &Self::Config,
        cx: &BuildContext,
    ) -> anyhow::Result<Self>;

    /// The future owns what it needs (`self` too), so it is spawned as it is: an `async`
    /// wrapper around it would store the connection and task twice in every idle task.
    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The registry: `Variant => runtime type;`, one line per server type.
macro_rules! server_runtimes {
    ($($variant:ident => $runtime:ty;)*) => {
        pub enum ServerRuntime {
            $($variant(Arc<$runtime>),)*
        }

        impl ServerRuntime {
            fn build(config: &ServerConfig, cx: &BuildContext) -> anyhow::Result<ServerRuntime> {
                Ok(match &config.server_type {
                    $(ServerType::$variant(own) => ServerRuntime::$variant(Arc::new(
                        <$runtime>::build(&config.common, own, cx)?,
                    )),)*
                })
            }

            fn kind(&self) -> TaskKind {
                match self {
                    $(ServerRuntime::$variant(_) => <$runtime>::KIND,)*
                }
            }

            /// The connection's whole future, boxed (one allocation, no wrapper around it).
            fn serve(&self, conn: ClientConn, task: TaskContext) -> BoxedServe {
                match self {
                    $(ServerRuntime::$variant(server) => Box::pin(server.clone().serve(conn, task)),)*
                }
            }
        }
    };
}

server_runtimes! {
    HttpProxy => http_proxy::HttpProxyServer;
    SocksProxy => socks_proxy::SocksProxyServer;
    PlainTcpPort => ports::PlainTcpPort;
    PlainTlsPort => ports::TlsPort;
    NativeTlsPort => ports::TlsPort;
    IntelliProxy => intelli_proxy::IntelliProxyServer;
    DummyClose => dummy_close::DummyClose;
    TcpStream => tcp_stream::TcpStreamServer;
    TlsStream => tls_stream::TlsStreamServer;
    SniProxy => sni_proxy::SniProxyServer;
    TcpTproxy => tcp_tproxy::TcpTproxyServer;
    HttpRproxy => http_rproxy::HttpRproxyServer;
}

type BoxedServe = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub struct Server {
    pub counters: Arc<ServerCounters>,
    ingress: Option<NetworkAcl>,
    misc_opts: TcpMiscOpts,
    misc_opts_failed: AtomicBool,
    runtime: ServerRuntime,
}

impl Server {
    pub fn build(config: &ServerConfig, cx: &BuildContext) -> anyhow::Result<Arc<Server>> {
        let runtime = ServerRuntime::build(config, cx)
            .map_err(|e| anyhow::anyhow!("server {}: {e:#}", config.name()))?;
        Ok(Arc::new(Server {
            counters: ServerCounters::logged(
                config.name(),
                config.type_name(),
                cx.context
                    .task_log
                    .as_ref()
                    .map(|log| log.named(format!("lt-{}", config.name()))),
                &config.common,
            ),
            ingress: config.common.ingress_network_filter.clone(),
            misc_opts: config.common.tcp_misc_opts.clone(),
            misc_opts_failed: AtomicBool::new(false),
            runtime,
        }))
    }

    fn admits(&self, conn: &ClientConn) -> bool {
        let permitted = self
            .ingress
            .as_ref()
            .is_none_or(|filter| filter.check(conn.client_addr.ip()).is_permitted());
        if !permitted {
            self.counters.listen_dropped.fetch_add(1, Ordering::Relaxed);
            info!(
                "server {}: client {} refused by ingress_network_filter",
                self.counters.name, conn.client_addr
            );
        }
        permitted
    }

    /// Takes a connection a port hands over: this server's ingress filter applies to the
    /// client address the connection carries now (as a PROXY header reported it). The
    /// answer is the boxed serve future (ports and servers may chain, and a future cannot
    /// contain itself), or `None` when the filter refused the client.
    pub fn serve_handed_over(&self, conn: ClientConn, mut task: TaskContext) -> Option<BoxedServe> {
        self.counters.total_conn.fetch_add(1, Ordering::Relaxed);
        if !self.admits(&conn) {
            return None;
        }
        task.enter(&self.counters, self.runtime.kind(), &conn);
        Some(self.runtime.serve(conn, task))
    }
}

/// The end of every tunnel (CONNECT, SOCKS, the stream servers, sni_proxy, tcp_tproxy):
/// what the client sent before the upstream existed goes first (within the idle timeout,
/// counted), then the shared relay, its bytes counted on the task.
pub async fn tunnel(
    client: &Stream,
    early: Vec<u8>,
    upstream: &Stream,
    task: &mut TaskContext,
    policy: &RelayPolicy,
    context: &Context,
) -> Result<(), TaskError> {
    if !early.is_empty() {
        write_all_within(upstream, &early, policy.idle_timeout())
            .await
            .map_err(TaskError::UpstreamIo)?;
        task.notes.bytes_up += early.len() as u64;
    }
    // Its memory goes before the tunnel settles in for what may be hours.
    drop(early);
    task.count_ready(false);
    let user = task.user.clone();
    let policy = policy
        .for_user(user.as_deref())
        .with_upstream_limit(task.notes.upstream_limit);
    let relay = relay::relay_tunnel(client, upstream, &policy, context, user.as_deref());
    let outcome = match task.server.log_interval {
        None => relay.await,
        // Boxed so that the ticker is not part of every tunnel's future.
        Some(interval) => Box::pin(relay_logging_periodically(relay, task, interval)).await,
    };
    task.notes.bytes_up += outcome.client_to_upstream;
    task.notes.bytes_down += outcome.upstream_to_client;
    task.notes.reason.set(outcome.end.reason());
    tracing::debug!(
        "server {}: task {} tunnel ended: {outcome}",
        task.server_name(),
        task.id
    );
    Ok(())
}

/// `task_log_flush_interval`: a `Periodic` event with the tunnel's bytes so far, every
/// `interval` until the relay ends.
async fn relay_logging_periodically(
    relay: relay::Tunnel<'_>,
    task: &mut TaskContext,
    interval: Duration,
) -> relay::RelayOutcome {
    let mut relay = std::pin::pin!(relay);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            outcome = &mut relay => break outcome,
            _ = ticks.tick() => task.log_periodic(relay.as_ref().get_ref().transferred()),
        }
    }
}

/// Leave for `target` from `gate`, then the escaper's connection to it. The permit comes
/// back too: the caller keeps it until the task ends (it holds the user's place among its
/// live requests).
pub async fn connect_permitted<'t>(
    gate: &Gate,
    escaper: &Escaper,
    task: &mut TaskContext,
    request: Option<ProxyRequestType>,
    target: &'t HostPort,
) -> (Option<Permit<'t>>, Result<Connected, TaskError>) {
    match gate.permit(task, request, target) {
        Ok(permit) => {
            let connected = Box::pin(escaper.tcp_connect(task, &permit)).await;
            (Some(permit), connected)
        }
        Err(error) => (None, Err(error)),
    }
}

/// What a server that only tunnels to one target (sni_proxy, tcp_tproxy) goes through.
pub struct Way<'a> {
    pub gate: &'a Gate,
    pub escaper: &'a Escaper,
    pub policy: &'a RelayPolicy,
    pub context: &'a Context,
}

impl Way<'_> {
    /// The rest of such a task: its user by the gate's facts (`server_name` for
    /// `auth_by_server_name`), leave for `target`, the connection and the relay, the user's
    /// place held to the end. Failures are logged; nobody is answered.
    pub async fn tunnel(
        &self,
        conn: ClientConn,
        task: &mut TaskContext,
        target: &HostPort,
        server_name: Option<&g3proxy_proto::Host>,
    ) {
        if let Err(error) = self.gate.admit_connection(task, server_name).await {
            error.log(task);
            return;
        }
        let (_permit, connected) =
            connect_permitted(self.gate, self.escaper, task, None, target).await;
        match connected {
            Ok(upstream) => {
                relay_to_upstream(conn, upstream, task, self.policy, self.context).await
            }
            Err(error) => error.log(task),
        }
    }
}

/// [`tunnel`] for servers that only tunnel: a failure is logged, nobody is answered.
pub async fn relay_to_upstream(
    conn: ClientConn,
    upstream: Connected,
    task: &mut TaskContext,
    policy: &RelayPolicy,
    context: &Context,
) {
    let ClientConn { stream, buffer, .. } = conn;
    let relayed = tunnel(&stream, buffer, &upstream.stream, task, policy, context);
    if let Err(error) = relayed.await {
        error.log(task);
    }
}

/// The relay policy from a server's common keys.
pub fn relay_policy(common: &ServerCommon) -> RelayPolicy {
    RelayPolicy {
        idle_check_interval: common.task_idle_check_interval.0,
        idle_max_count: common.task_idle_max_count,
        buffer_size: common.tcp_copy_buffer_size.0 as usize,
        speed_limit: common.tcp_sock_speed_limit.filter(|l| !l.is_unlimited()),
    }
}

/// Accepts until the worker stops serving, then drops this copy of the socket. The supervisor
/// keeps its own, so connections still queued are accepted by the next generation.
pub async fn accept_loop(listener: TcpListener, server: Arc<Server>, context: Arc<Context>) {
    let mut phase = context.phase.clone();
    let counters = server.counters.clone();
    counters.listen_instances.fetch_add(1, Ordering::Relaxed);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                counters.listen_failed.fetch_add(1, Ordering::Relaxed);
                // Out of descriptors or memory: back off instead of spinning on the error.
                warn!("server {}: accept failed: {error}", counters.name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        counters.listen_accepted.fetch_add(1, Ordering::Relaxed);
        counters.total_conn.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        if !server.misc_opts.is_empty()
            && let Err(error) = sockopt::apply(&tcp, &server.misc_opts)
            && !server.misc_opts_failed.swap(true, Ordering::Relaxed)
        {
            // Once per server: the kernel refuses the same option on every connection.
            warn!(
                "server {}: tcp_misc_opts: {error} (reported once)",
                counters.name
            );
        }
        let local = tcp.local_addr().unwrap_or(peer);
        let conn = ClientConn::new(Stream::plain(tcp), peer, local);
        if !server.admits(&conn) {
            continue;
        }
        let task = TaskContext::new(&context.tasks, &counters, server.runtime.kind(), &conn);
        let server = server.clone();
        tokio::spawn(server.runtime.serve(conn, task));
    }
    counters.listen_instances.fetch_sub(1, Ordering::Relaxed);
}
