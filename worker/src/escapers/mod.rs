//! Escapers: how a task reaches its upstream. An escaper is a set of operations every server
//! uses the same way: [`Escaper::tcp_connect`] (the stream, and what it went through: next hop
//! and bound address, noted on the task), [`Escaper::tls_connect`] on top of it,
//! [`Escaper::http_forward`] (a connection for a forwarded HTTP request and the form the
//! request takes on it: origin form to an origin, absolute form to a next-hop proxy), and for
//! UDP [`Escaper::udp_connect`] (one target) and [`UdpRelay`] (a target per datagram), in
//! `udp.rs`.
//! Route escapers answer none of these themselves: [`Escaper::route`] follows them to the
//! escaper that serves the target, before every operation.
//!
//! A type implements [`EscaperOps`] (each operation has a default: unsupported) in its own
//! file and takes one line in [`escaper_runtimes!`]. A name that a server or route refers to
//! but the config lacks gets a deny-all stand-in, as g3proxy's `DummyDeny`.

mod agent;
mod connect;
pub use connect::any_address_for;
mod deny_all;
mod direct;
mod direct_fixed;
mod direct_float;
mod divert_tcp;
mod next_hop;
mod proxy_float;
mod proxy_http;
mod proxy_socks5;
mod route_client;
mod route_failover;
mod route_geoip;
mod route_query;
mod route_resolved;
mod route_select;
mod route_upstream;
mod rules;
mod trick_float;
mod udp;
pub use udp::{LimitedSocket, PeerAssociation, UdpConnected, UdpRelay};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use g3proxy_proto::{HostPort, proxy_protocol};
use g3proxy_shared::config::EscaperConfig;
use g3proxy_shared::config::escapers::{EscaperType, ResolveStrategy};
use g3proxy_shared::config::servers::ProxyProtocol;
use g3proxy_shared::config::tls::TlsClientConfig;
use g3proxy_shared::config::user_groups::UserConfig;
use g3proxy_shared::ipc::worker::Published;
use g3proxy_shared::types::SpeedLimit;
use rustls::pki_types::ServerName;

use crate::auth::{Permit, Site, User};
use crate::conn::Stream;
use crate::error::{Forbidden, TaskError};
use crate::log::{Event, Logger};
use crate::resolvers::Resolver;
use crate::task::TaskContext;

/// An upstream connection and what it went through.
pub struct Connected {
    pub stream: Stream,
    /// The address connected to: the target itself, or a next-hop proxy.
    pub next_hop: SocketAddr,
    /// Our end of it.
    pub bound: SocketAddr,
    /// The escaper's `tcp_sock_speed_limit` toward the target, for the relay to apply on top
    /// of the server's and the user's.
    pub speed_limit: Option<SpeedLimit>,
    /// It told the far end who the client is (a PROXY header): it must never carry another
    /// client's requests (a shared pool of kept connections).
    pub names_client: bool,
}

/// One task's way out as an escaper sees it: where to, and who asks (for routes on the
/// client, the hashing pick policies, and what divert_tcp tells its next hop).
#[derive(Clone, Copy)]
pub struct Leg<'a> {
    pub target: &'a HostPort,
    pub client: SocketAddr,
    /// The address the client came in at.
    pub server: SocketAddr,
    pub task_id: u64,
    /// The task's user, and the user's explicit site for the target: their settings for
    /// the escapers that resolve and connect to the target themselves.
    pub user: Option<&'a User>,
    pub site: Option<&'a Site>,
    /// The path number the request picks for one escaper (by name), as g3's path
    /// selection (`egress_path_selection_header`).
    pub egress_path: Option<(&'a str, usize)>,
    /// The escaper the leg is shown to: path selections are each for one escaper.
    pub escaper: &'a str,
    /// The target as the user's `resolve_redirection` has it resolved, for the escapers
    /// that resolve names themselves (see [`Leg::for_connect`]).
    pub redirected: Option<&'a HostPort>,
}

/// A task's path selection for one escaper (g3's egress path selection): the request's
/// number (`egress_path_selection_header`), the user's id (`egress_path_id_map`) and value
/// (`egress_path_value_map`). UDP takes none of them, as in g3.
#[derive(Clone, Copy, Default)]
pub struct PathChoice<'a> {
    pub number: Option<usize>,
    pub id: Option<&'a str>,
    pub value: Option<&'a serde_json::Value>,
}

impl PathChoice<'_> {
    /// Which of `len` paths the number picks, as g3 maps it: 1 to `len` are themselves, 0 is
    /// the last, larger ones wrap around.
    pub fn index(&self, len: usize) -> Option<usize> {
        let number = self.number?;
        if len == 0 {
            return None;
        }
        Some(match number {
            0 => len - 1,
            number => (number - 1) % len,
        })
    }
}

impl<'a> Leg<'a> {
    pub fn client_ip(&self) -> IpAddr {
        self.client.ip()
    }

    /// Which of `len` paths the request picks here (see [`PathChoice::index`]).
    pub fn path_index(&self, len: usize) -> Option<usize> {
        self.path_choice().index(len)
    }

    /// The path the user's `egress_path_id_map` names for this escaper (a published
    /// bind's id, a peer's id, a next escaper's name).
    pub fn path_id(&self) -> Option<&'a str> {
        let map = self.user_config()?.egress_path_id_map.as_ref()?;
        map.get(self.escaper).map(String::as_str)
    }

    /// What the user's `egress_path_value_map` gives this escaper whole (a bind, a peer).
    pub fn path_value(&self) -> Option<&'a serde_json::Value> {
        let map = self.user_config()?.egress_path_value_map.as_ref()?;
        map.get(self.escaper)
    }

    /// Every path selection the task makes for this escaper, in g3's order: the user's
    /// (id, then value) before the request's number.
    pub fn path_choice(&self) -> PathChoice<'a> {
        PathChoice {
            number: self
                .egress_path
                .filter(|(name, _)| *name == self.escaper)
                .map(|(_, number)| number),
            id: self.path_id(),
            value: self.path_value(),
        }
    }

    /// The leg an escaper connects: toward the redirected target when it resolves names
    /// itself (a next-hop proxy resolves them its own way).
    pub fn for_connect(&self, resolves_names: bool) -> Leg<'a> {
        match (resolves_names, self.redirected) {
            (true, Some(redirected)) => Leg {
                target: redirected,
                ..*self
            },
            _ => *self,
        }
    }

    /// The same leg shown to `escaper`.
    pub fn for_escaper<'b>(&self, escaper: &'b str) -> Leg<'b>
    where
        'a: 'b,
    {
        Leg { escaper, ..*self }
    }

    pub fn user_name(&self) -> Option<&'a str> {
        self.user.map(|user| &*user.name)
    }

    /// The user's config, for its keys that bound or adjust an escaper's.
    pub fn user_config(&self) -> Option<&'a UserConfig> {
        self.user.map(|user| user.config())
    }

    /// The site's `resolve_strategy`, else the user's.
    pub fn resolve_strategy(&self) -> Option<ResolveStrategy> {
        self.site
            .and_then(|site| site.resolve_strategy)
            .or_else(|| self.user_config()?.resolve_strategy)
    }

    /// g3's key for the hashing pick policies: `<client-ip>[-<user>]-<host>`.
    pub fn hash_key(&self) -> Vec<u8> {
        match self.user_name() {
            Some(user) => format!("{}-{user}-{}", self.client_ip(), self.target.host),
            None => format!("{}-{}", self.client_ip(), self.target.host),
        }
        .into_bytes()
    }
}

/// How a forwarded HTTP request is written on its connection.
#[derive(Clone)]
pub enum RequestForm {
    /// To the origin itself: `GET /path`.
    Origin,
    /// To a next-hop proxy: `GET http://host/path`, with our credentials for it as a ready
    /// `Proxy-Authorization` line.
    Absolute { authorization: Option<Arc<str>> },
}

/// A connection for forwarded HTTP requests.
pub struct Forward {
    pub connected: Connected,
    pub form: RequestForm,
}

/// What an escaper type does. Every operation but routing has an escaper's answer to it;
/// a type that cannot do one keeps the default, which says so.
trait EscaperOps {
    /// Route escapers: the escaper `leg` goes to next.
    async fn next_for(&self, _leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        Ok(None)
    }

    /// Whether the escaper resolves target names itself, so that a user's
    /// `resolve_redirection` applies (a next-hop proxy resolves them its own way).
    fn resolves_names(&self) -> bool {
        false
    }

    /// `use_proxy_protocol`: the header to send first on a connection to the target.
    fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        None
    }

    /// Float types: what `escaper NAME publish` gave (the supervisor checked it).
    fn publish(&self, _published: &Published) -> Result<(), String> {
        Err("this escaper takes no publish".into())
    }

    async fn tcp_connect(&self, _leg: &Leg<'_>) -> Result<Connected, TaskError> {
        Err(TaskError::Unsupported("tcp connect".into()))
    }

    /// A connection to forward HTTP requests to `target` on, when this escaper forwards
    /// them its own way; `None`: over [`Escaper::tcp_connect`] or [`Escaper::tls_connect`]
    /// in origin form.
    async fn http_forward(&self, _leg: &Leg<'_>, _tls: bool) -> Option<Result<Forward, TaskError>> {
        None
    }

    /// Where a datagram for `target` goes, after resolution and the egress filter.
    async fn udp_target(&self, _leg: &Leg<'_>) -> Result<SocketAddr, TaskError> {
        Err(TaskError::Unsupported("udp".into()))
    }

    /// A socket to send datagrams to `target` from.
    fn udp_bind(&self, _target: SocketAddr) -> Result<LimitedSocket, TaskError> {
        Err(TaskError::Unsupported("udp".into()))
    }

    /// An association with a next hop that relays the datagrams itself; `None`: the
    /// escaper sends them from its own sockets ([`EscaperOps::udp_target`]).
    async fn udp_associate(&self, _leg: &Leg<'_>) -> Option<Result<PeerAssociation, TaskError>> {
        None
    }
}

/// The runtime enum and its dispatch: one variant per config type, plus the stand-in used
/// for names the config lacks (it has no config of its own).
macro_rules! escaper_runtimes {
    (stand_in $standin:ident => $standin_runtime:ty; $($variant:ident => $runtime:ty;)*) => {
        enum EscaperRuntime {
            $($variant($runtime),)*
            $standin($standin_runtime),
        }

        impl EscaperRuntime {
            fn build(config: &EscaperConfig, deps: &Dependencies) -> anyhow::Result<Self> {
                Ok(match &config.escaper_type {
                    $(EscaperType::$variant(own) => {
                        EscaperRuntime::$variant(<$runtime>::build(own, deps)?)
                    })*
                })
            }
        }

        /// Each operation, passed on to the runtime's type.
        impl EscaperOps for EscaperRuntime {
            async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.next_for(leg).await,)*
                    EscaperRuntime::$standin(e) => e.next_for(leg).await,
                }
            }

            fn resolves_names(&self) -> bool {
                match self {
                    $(EscaperRuntime::$variant(e) => e.resolves_names(),)*
                    EscaperRuntime::$standin(e) => e.resolves_names(),
                }
            }

            fn proxy_protocol(&self) -> Option<ProxyProtocol> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.proxy_protocol(),)*
                    EscaperRuntime::$standin(e) => e.proxy_protocol(),
                }
            }

            fn publish(&self, published: &Published) -> Result<(), String> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.publish(published),)*
                    EscaperRuntime::$standin(e) => e.publish(published),
                }
            }

            async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.tcp_connect(leg).await,)*
                    EscaperRuntime::$standin(e) => e.tcp_connect(leg).await,
                }
            }

            async fn http_forward(
                &self,
                leg: &Leg<'_>,
                tls: bool,
            ) -> Option<Result<Forward, TaskError>> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.http_forward(leg, tls).await,)*
                    EscaperRuntime::$standin(e) => e.http_forward(leg, tls).await,
                }
            }

            async fn udp_target(&self, leg: &Leg<'_>) -> Result<SocketAddr, TaskError> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.udp_target(leg).await,)*
                    EscaperRuntime::$standin(e) => e.udp_target(leg).await,
                }
            }

            fn udp_bind(&self, target: SocketAddr) -> Result<LimitedSocket, TaskError> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.udp_bind(target),)*
                    EscaperRuntime::$standin(e) => e.udp_bind(target),
                }
            }

            async fn udp_associate(
                &self,
                leg: &Leg<'_>,
            ) -> Option<Result<PeerAssociation, TaskError>> {
                match self {
                    $(EscaperRuntime::$variant(e) => e.udp_associate(leg).await,)*
                    EscaperRuntime::$standin(e) => e.udp_associate(leg).await,
                }
            }
        }
    };
}

escaper_runtimes! {
    stand_in DenyAll => deny_all::DenyAll;
    DirectFixed => direct_fixed::DirectFixedEscaper;
    DirectFloat => direct_float::DirectFloatEscaper;
    ProxyFloat => proxy_float::ProxyFloatEscaper;
    ProxyHttp => proxy_http::ProxyHttpEscaper;
    ProxyHttps => proxy_http::ProxyHttpEscaper;
    ProxySocks5 => proxy_socks5::ProxySocks5Escaper;
    ProxySocks5s => proxy_socks5::ProxySocks5Escaper;
    RouteUpstream => route_upstream::RouteUpstreamEscaper;
    DummyDeny => deny_all::DenyAll;
    RouteFailover => route_failover::RouteFailoverEscaper;
    RouteClient => route_client::RouteClientEscaper;
    RouteResolved => route_resolved::RouteResolvedEscaper;
    RouteSelect => route_select::RouteSelectEscaper;
    RouteQuery => route_query::RouteQueryEscaper;
    RouteGeoip => route_geoip::RouteGeoipEscaper;
    DivertTcp => divert_tcp::DivertTcpEscaper;
    TrickFloat => trick_float::TrickFloatEscaper;
    RouteMapping => trick_float::TrickFloatEscaper;
}

/// What an escaper may refer to while it is built: resolvers, and the escapers built before
/// it (the config lists escapers after those they route to).
pub struct Dependencies<'a> {
    pub resolvers: &'a HashMap<String, Arc<Resolver>>,
    pub escapers: &'a HashMap<String, Arc<Escaper>>,
    /// Where escapers log their failures (the `log` section's `escape` driver).
    pub escape_log: Option<&'a Arc<Logger>>,
}

impl Dependencies<'_> {
    pub fn resolver(&self, name: &str) -> Arc<Resolver> {
        Resolver::named(self.resolvers, name)
    }

    /// The escaper called `name`, or a deny-all stand-in when the config lacks it.
    pub fn escaper(&self, name: &str) -> Arc<Escaper> {
        Escaper::named(self.escapers, name)
    }
}

pub struct Escaper {
    pub name: Arc<str>,
    /// The config type as g3 names it in escape logs (`DirectFixed`).
    type_name: String,
    log: Option<Arc<Logger>>,
    pub counters: EscaperCounters,
    runtime: EscaperRuntime,
}

/// An escaper prints as its name (what the hashing pick policies of `route_select` hash, so
/// that every worker maps a key to the same escaper).
impl std::fmt::Display for Escaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// What an escaper did, for its metrics (`escaper.*` in g3's names): connections asked of
/// it and made, and targets its egress filter refused. Counted where the work ends up, after
/// routing: a route escaper counts nothing of its own.
#[derive(Default)]
pub struct EscaperCounters {
    pub attempts: AtomicU64,
    pub established: AtomicU64,
    pub ip_blocked: AtomicU64,
}

impl EscaperCounters {
    fn count<T>(&self, result: &Result<T, TaskError>) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(_) => self.established.fetch_add(1, Ordering::Relaxed),
            Err(TaskError::Policy(Forbidden::EgressAddress(_))) => {
                self.ip_blocked.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => 0,
        };
    }
}

impl Escaper {
    pub fn build(config: &EscaperConfig, deps: &Dependencies) -> anyhow::Result<Escaper> {
        Ok(Escaper {
            name: config.name().into(),
            type_name: crate::log::g3_type_name(config.type_name()),
            log: deps
                .escape_log
                .map(|log| log.named(format!("le-{}", config.name()))),
            counters: EscaperCounters::default(),
            runtime: EscaperRuntime::build(config, deps)?,
        })
    }

    /// The escaper called `name`, or a deny-all stand-in when the config lacks it.
    pub fn named(escapers: &HashMap<String, Arc<Escaper>>, name: &str) -> Arc<Escaper> {
        escapers.get(name).cloned().unwrap_or_else(|| {
            Arc::new(Escaper {
                name: name.into(),
                type_name: crate::log::g3_type_name("dummy_deny"),
                log: None,
                counters: EscaperCounters::default(),
                runtime: EscaperRuntime::DenyAll(deny_all::DenyAll::new(name)),
            })
        })
    }

    /// What `escaper NAME publish` gave, for a float escaper; a later publish that reached us
    /// first wins.
    pub fn publish(&self, published: &Published) -> Result<(), String> {
        self.runtime.publish(published)
    }

    /// The escaper that serves `leg`: this one, or where its routes lead.
    pub async fn route(&self, leg: &Leg<'_>) -> Result<&Escaper, TaskError> {
        let mut escaper = self;
        // The loader refuses cyclic routes, so this ends.
        loop {
            match escaper
                .runtime
                .next_for(&leg.for_escaper(&escaper.name))
                .await?
            {
                Some(next) => escaper = next,
                None => return Ok(escaper),
            }
        }
    }

    /// The permit's way out, as routes see it.
    fn leg<'p>(&'p self, permit: &'p Permit<'_>) -> Leg<'p> {
        Leg {
            escaper: &self.name,
            target: permit.target(),
            client: permit.client(),
            server: permit.server(),
            task_id: permit.task_id(),
            user: permit.user(),
            site: permit.site(),
            egress_path: permit.egress_path(),
            redirected: permit.redirected(),
        }
    }

    /// The way out this escaper connects for `permit`: to the target redirected by the user
    /// when the escaper resolves names itself.
    fn connect_leg<'p>(&'p self, permit: &'p Permit<'_>) -> Leg<'p> {
        self.leg(permit).for_connect(self.runtime.resolves_names())
    }

    /// Names this escaper in an error that did not say who could not do what.
    fn explain(&self, error: TaskError) -> TaskError {
        match error {
            TaskError::Unsupported(what) => {
                TaskError::Unsupported(format!("escaper {} does not do {what}", self.name))
            }
            TaskError::Policy(Forbidden::DeniedByEscaper(name)) if name.is_empty() => {
                TaskError::Policy(Forbidden::DeniedByEscaper(self.name.to_string()))
            }
            other => other,
        }
    }

    /// An escape log event for a TCP connection that could not be made, as g3 writes them
    /// (failures only; a lookup or a policy refusal is the task's, not an escape error); its
    /// `task_id` is the one the task's (or the request's) own event has.
    fn log_failure<T>(
        &self,
        task: &TaskContext,
        permit: &Permit<'_>,
        result: &Result<T, TaskError>,
        started: std::time::Instant,
    ) {
        let (Some(log), Err(error)) = (&self.log, result) else {
            return;
        };
        let Some(reason) = error.connect_brief() else {
            return;
        };
        let mut event = self.escape_event("TcpConnect", task, permit.target(), error);
        event
            .elapsed("tcp_connect_spend", started.elapsed())
            .text("reason", reason);
        log.log(event);
    }

    /// The fields every escape event has (g3's), and the error in full as its message.
    fn escape_event(
        &self,
        escape_type: &'static str,
        task: &TaskContext,
        upstream: &HostPort,
        error: &TaskError,
    ) -> Event {
        let mut event = Event::new();
        event
            .text("escape_type", escape_type)
            .text("escaper_type", &self.type_name)
            .text("escaper_name", &self.name)
            .id("task_id", task.log_id())
            .host_port("upstream", upstream)
            .opt_addr("next_bound_addr", task.notes.bound)
            .opt_addr("next_peer_addr", task.notes.next_hop);
        event.message = error.to_string();
        event
    }

    /// Notes on the task where it is going, before it goes: a task that fails to connect
    /// still logs its target and escaper.
    fn note_attempt(&self, task: &mut TaskContext, target: &HostPort) {
        task.notes.escaper = Some(self.name.clone());
        task.notes.upstream = Some(target.clone());
    }

    fn note(&self, task: &mut TaskContext, connected: &Connected) {
        let notes = &mut task.notes;
        notes.next_hop = Some(connected.next_hop);
        notes.bound = Some(connected.bound);
        notes.upstream_limit = connected.speed_limit;
        notes.connected_at = Some(std::time::Instant::now());
    }

    /// Opens a TCP connection toward the permit's target and notes on the task how it went.
    pub async fn tcp_connect(
        &self,
        task: &mut TaskContext,
        permit: &Permit<'_>,
    ) -> Result<Connected, TaskError> {
        let connected = self.connect_tcp(task, permit).await?;
        // A forwarded request logs its own, with its head, once its connection is noted.
        if !task.notes.in_request {
            task.log_stage("Connected", None);
        }
        Ok(connected)
    }

    async fn connect_tcp(
        &self,
        task: &mut TaskContext,
        permit: &Permit<'_>,
    ) -> Result<Connected, TaskError> {
        let escaper = self.route(&self.leg(permit)).await?;
        escaper.note_attempt(task, permit.target());
        let started = std::time::Instant::now();
        let mut connected = escaper
            .runtime
            .tcp_connect(&escaper.connect_leg(permit))
            .await
            .map_err(|e| escaper.explain(e));
        if let (Ok(upstream), Some(version)) = (&mut connected, escaper.runtime.proxy_protocol()) {
            let sent = send_proxy_header(upstream, version, task.client_addr, task.local_addr);
            match sent.await {
                Ok(()) => upstream.names_client = true,
                Err(error) => connected = Err(TaskError::UpstreamIo(error)),
            }
        }
        escaper.counters.count(&connected);
        escaper.log_failure(task, permit, &connected, started);
        let connected = connected?;
        escaper.note(task, &connected);
        Ok(connected)
    }

    /// A TCP connection as [`Escaper::tcp_connect`] opens it, then TLS to the target with
    /// `config`; the certificate is checked against `tls_name`, or the target's host.
    pub async fn tls_connect(
        &self,
        task: &mut TaskContext,
        permit: &Permit<'_>,
        config: &TlsClientConfig,
        tls_name: Option<&str>,
    ) -> Result<Connected, TaskError> {
        // The escaper that connects, for the escape log of a handshake that fails.
        let escaper = self.route(&self.leg(permit)).await?;
        // Connected once TLS is done, not before.
        let connected = escaper.connect_tcp(task, permit).await?;
        let name = match tls_name {
            Some(name) => Some(
                ServerName::try_from(name.to_string())
                    .map_err(|e| TaskError::UpstreamTls(std::io::Error::other(e)))?,
            ),
            None => None,
        };
        let secured = connect::tls_over(connected, config, name, &permit.target().host).await;
        if let (Err(error), Some(log)) = (&secured, &escaper.log) {
            let target = permit.target();
            let application = match task.kind() {
                crate::context::TaskKind::Http => "HttpForward",
                _ => "TcpStream",
            };
            let mut event = escaper.escape_event("TlsHandshake", task, target, error);
            event
                .str(
                    "tls_name",
                    tls_name.map_or_else(|| target.host.to_string(), str::to_string),
                )
                .str("tls_peer", target)
                .str("tls_application", application);
            log.log(event);
        }
        if secured.is_ok() && !task.notes.in_request {
            task.log_stage("Connected", None);
        }
        secured
    }

    /// A connection to forward HTTP requests for `target` on, and the form the requests take
    /// on it. For https (`tls`), TLS to the origin is ours, with the config `tls_config`
    /// gives (the certificate checked against `tls_name`, or the target's host), unless the
    /// escaper leaves it to a next hop (then `tls_config` is not called).
    pub async fn http_forward<'c>(
        &self,
        task: &mut TaskContext,
        permit: &Permit<'_>,
        tls: bool,
        tls_name: Option<&str>,
        tls_config: impl FnOnce() -> Result<&'c TlsClientConfig, TaskError>,
    ) -> Result<Forward, TaskError> {
        let leg = self.leg(permit);
        let escaper = self.route(&leg).await?;
        escaper.note_attempt(task, permit.target());
        let started = std::time::Instant::now();
        let own = leg.for_escaper(&escaper.name);
        if let Some(forward) = escaper.runtime.http_forward(&own, tls).await {
            let forward = forward.map_err(|e| escaper.explain(e));
            escaper.counters.count(&forward);
            escaper.log_failure(task, permit, &forward, started);
            let forward = forward?;
            escaper.note(task, &forward.connected);
            return Ok(forward);
        }
        let connected = match tls {
            true => {
                let config = tls_config()?;
                escaper.tls_connect(task, permit, config, tls_name).await?
            }
            false => escaper.tcp_connect(task, permit).await?,
        };
        Ok(Forward {
            connected,
            form: RequestForm::Origin,
        })
    }
}

/// The value of the latest publish, by sequence: a publish that arrives after a later one
/// (by another path) is dropped.
#[derive(Default)]
pub struct Latest<T> {
    sequence: u64,
    pub value: T,
}

impl<T> Latest<T> {
    pub fn replace(&mut self, sequence: u64, value: T) {
        if sequence >= self.sequence {
            self.sequence = sequence;
            self.value = value;
        }
    }
}

/// Writes the PROXY protocol header for a task from `client` that came in at `server`.
async fn send_proxy_header(
    connected: &Connected,
    version: ProxyProtocol,
    client: SocketAddr,
    server: SocketAddr,
) -> std::io::Result<()> {
    let mut header = Vec::with_capacity(108);
    match version {
        ProxyProtocol::V1 => proxy_protocol::encode_v1(client, server, &mut header),
        ProxyProtocol::V2 => proxy_protocol::encode_v2(client, server, &mut header),
    }
    crate::conn::write_all_within(&connected.stream, &header, HEADER_WRITE_TIMEOUT).await
}

/// A fresh connection takes a PROXY header at once; a peer that does not is not there.
pub(crate) const HEADER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
