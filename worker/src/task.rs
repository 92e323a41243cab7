//! The task context: made when a connection is accepted and passed to every step after it
//! (server, escaper, relay). It carries who the client is, which server serves it, the user
//! once authenticated, and the notes a task log will print; it holds the task's place in the
//! worker's registry, so draining knows when the worker is done.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

use crate::auth::User;
use crate::conn::{ClientConn, TlsFacts};

use crate::context::{ServerCounters, TaskGuard, TaskKind, TaskRegistry};
use crate::log::Event;
use g3proxy_proto::HostPort;
use g3proxy_proto::http1::RequestHead;

/// What happened on the way to the upstream, for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct TaskNotes {
    /// The escaper that connected (the last one, after routing).
    pub escaper: Option<Arc<str>>,
    /// The address we connected to: the target, or a next-hop proxy.
    pub next_hop: Option<SocketAddr>,
    /// Our local address of the upstream connection.
    pub bound: Option<SocketAddr>,
    /// The escaper's `tcp_sock_speed_limit` on that connection.
    pub upstream_limit: Option<g3proxy_shared::types::SpeedLimit>,
    /// The target, as the client named it.
    pub upstream: Option<HostPort>,
    /// When the upstream connection was made (the task log's `ready_time`).
    pub connected_at: Option<Instant>,
    /// The status the upstream answered the request being forwarded with.
    pub rsp_status: Option<u16>,
    /// HTTP requests of this connection logged as tasks of their own (g3's `HttpForward`
    /// tasks): the connection then writes no event of its own for them.
    pub requests_logged: u32,
    /// A forwarded request is under way (between `begin_request` and `log_request`), and
    /// where its log starts; whether it (or the task) logged `Connected` already.
    pub in_request: bool,
    pub connected_logged: bool,
    /// Why the task ended, in g3's words (`ClosedByClient`, `UpstreamNotConnected`, ...);
    /// `Finished` when nothing says otherwise. Set through the shared reference every server
    /// hands its error log.
    pub reason: EndReason,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// A UDP task's datagrams each way, its client's UDP address and the socket it sends
    /// from, and its first target (g3's `UdpAssociate` / `UdpConnect` fields).
    pub packets_up: u64,
    pub packets_down: u64,
    /// Boxed: tunnels, the most numerous tasks, never have one.
    pub udp: Option<Box<UdpNotes>>,
}

pub struct TaskContext {
    pub id: u64,
    pub server: Arc<ServerCounters>,
    pub client_addr: SocketAddr,
    pub local_addr: SocketAddr,
    /// The user the server's gate admitted (`auth::Gate::admit`); none on servers without
    /// a user group.
    pub user: Option<Arc<User>>,
    /// The admitted user's counts on this server (`user.*` metrics), and the type of its
    /// last request counted (an index of `auth::stats::REQUEST_TYPES`; `u8::MAX`: none).
    pub user_stats: Option<Arc<crate::auth::stats::UserCounters>>,
    pub user_request: u8,
    /// When the gate let the user's last request through (ready times start there).
    pub counted_at: Instant,
    /// The path the current request picks for an escaper (its name, a number), from
    /// `egress_path_selection_header`.
    pub egress_path: Option<(Arc<str>, usize)>,
    /// The counts of the explicit site (with `emit_stats`) of the user's last request.
    pub site_stats: Option<Arc<crate::auth::stats::UserCounters>>,
    /// The bytes and datagrams (up, down) already added to the user's and site's counts.
    user_counted: [u64; 4],
    /// What the client's TLS handshake said, when a server or port terminated it.
    pub client_tls: Option<Box<TlsFacts>>,
    pub started: Instant,
    /// The same moment on the wall clock, for the task log's `start_at`.
    started_at: SystemTime,
    pub notes: TaskNotes,
    guard: TaskGuard,
}

impl TaskContext {
    pub fn new(
        tasks: &Arc<TaskRegistry>,
        server: &Arc<ServerCounters>,
        kind: TaskKind,
        conn: &ClientConn,
    ) -> TaskContext {
        let guard = tasks.register(server, kind);
        TaskContext {
            id: guard.id(),
            server: server.clone(),
            client_addr: conn.client_addr,
            local_addr: conn.local_addr,
            user: None,
            user_stats: None,
            user_request: u8::MAX,
            counted_at: Instant::now(),
            egress_path: None,
            site_stats: None,
            user_counted: [0; 4],
            client_tls: conn.tls.clone(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            notes: TaskNotes::default(),
            guard,
        }
    }

    /// The `Created` event of a task the gate let through toward `target` (an HTTP
    /// connection's forwarded requests each log their own): nothing yet of where it goes
    /// or what it moved, whatever an earlier request on the same connection noted.
    pub fn log_created(&self, target: Option<&HostPort>) {
        if self.guard.kind() == TaskKind::Http || !self.server.log_on_created {
            return;
        }
        let Some(log) = self.task_log() else {
            return;
        };
        let mut event = self.fresh_event();
        event
            .opt_host_port("upstream", target)
            .text("task_event", "Created");
        log.log(event);
    }

    /// A port or intelli_proxy handed the connection to `server`, which serves it from now on;
    /// the addresses are those the connection carries now (after a PROXY header).
    pub fn enter(&mut self, server: &Arc<ServerCounters>, kind: TaskKind, conn: &ClientConn) {
        server.total_task.fetch_add(1, Ordering::Relaxed);
        self.guard.move_to(server);
        self.guard.set_kind(kind);
        self.server = server.clone();
        self.client_addr = conn.client_addr;
        self.local_addr = conn.local_addr;
        self.client_tls = conn.tls.clone();
    }

    pub fn server_name(&self) -> &str {
        &self.server.name
    }

    /// What the task is (as the fleet view counts it).
    pub fn kind(&self) -> TaskKind {
        self.guard.kind()
    }

    /// What the task turned out to be, for the fleet view.
    pub fn set_kind(&mut self, kind: TaskKind) {
        self.guard.set_kind(kind);
    }
}

/// g3's reasons a task ended (`ServerTaskError`), the first the default.
const REASONS: [&str; 18] = [
    "Finished",
    "InvalidClientProtocol",
    "ClientTcpReadFailed",
    "ClientAppTimeout",
    "UpstreamNotResolved",
    "ForbiddenByRule",
    "ClientAuthFailed",
    "UpstreamNotConnected",
    "UpstreamReadFailed",
    "UpstreamAppError",
    "UpstreamAppTimeout",
    "InternalServerError",
    "UnimplementedProtocol",
    "ClosedByClient",
    "Idle",
    "CanceledAsServerQuit",
    "CanceledAsUserBlocked",
    "ClosedByUpstream",
];

/// Why a task ended: one of [`REASONS`], kept as its index.
#[derive(Debug, Default)]
pub struct EndReason(AtomicU8);

impl EndReason {
    /// `reason` must be one of g3's names above; another leaves the reason as it was.
    pub fn set(&self, reason: &'static str) {
        if let Some(index) = REASONS.iter().position(|r| *r == reason) {
            self.0.store(index as u8, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> &'static str {
        REASONS[usize::from(self.0.load(Ordering::Relaxed)) % REASONS.len()]
    }
}

impl Clone for EndReason {
    fn clone(&self) -> Self {
        EndReason(AtomicU8::new(self.0.load(Ordering::Relaxed)))
    }
}

/// A task's id as g3 writes one (a UUID, 16 bytes): this worker's pid, then the task's
/// number in the worker; unique in a group's fleet while pids are.
pub fn task_uuid(id: u64) -> [u8; 16] {
    request_uuid(id, 0)
}

/// The id of request `sequence` (from 1) of task `id`, each request of an HTTP connection
/// being a task of its own in g3's logs.
fn request_uuid(id: u64, sequence: u32) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    uuid[..4].copy_from_slice(&crate::log::pid().to_be_bytes());
    uuid[4..8].copy_from_slice(&sequence.to_be_bytes());
    uuid[8..].copy_from_slice(&id.to_be_bytes());
    uuid
}

/// What a UDP task's log says of its sockets.
#[derive(Debug, Clone)]
pub struct UdpNotes {
    pub listen: SocketAddr,
    pub client: SocketAddr,
    pub initial_peer: String,
    /// `udp connect` (one target) rather than `udp associate`.
    pub connect: bool,
}

/// Where a request's log starts: its time and the connection's counts then.
#[derive(Debug, Clone, Copy)]
pub struct RequestLog {
    started: Instant,
    started_at: SystemTime,
    bytes: (u64, u64),
}

/// `log_uri_max_chars`' default: longer URIs are cut.
const URI_MAX_CHARS: usize = 1024;

impl TaskContext {
    /// The task id other logs name this task by: the request's while one is forwarded (its
    /// own task in g3's logs), else the connection's.
    pub fn log_id(&self) -> [u8; 16] {
        match self.notes.in_request {
            true => request_uuid(self.id, self.notes.requests_logged + 1),
            false => task_uuid(self.id),
        }
    }

    /// Notes the start of a forwarded request, for its own task log event.
    pub fn begin_request(&mut self) -> RequestLog {
        self.notes.rsp_status = None;
        self.notes.connected_at = None;
        self.notes.reason.set("Finished");
        self.notes.in_request = true;
        self.notes.connected_logged = false;
        RequestLog {
            started: Instant::now(),
            started_at: SystemTime::now(),
            bytes: (self.notes.bytes_up, self.notes.bytes_down),
        }
    }

    /// A task log event before the end, when the server asks for it
    /// (`flush_task_log_on_created` / `_connected`): `task_event` `Created` or `Connected`,
    /// for the request being forwarded (with its HTTP fields, given `head`) or the task.
    pub fn log_stage(
        &mut self,
        task_event: &'static str,
        request: Option<(&RequestLog, &RequestHead)>,
    ) {
        let wanted = match task_event {
            "Created" => self.server.log_on_created,
            // Once per task or request, whatever retries and failovers follow.
            _ => self.server.log_on_connected && !self.notes.connected_logged,
        };
        if !wanted {
            return;
        }
        let Some(log) = self.task_log().cloned() else {
            return;
        };
        if task_event == "Connected" {
            self.notes.connected_logged = true;
        }
        let mut event = match request {
            Some((request, head)) => self.request_event(&self.log_id(), request, head, None),
            _ => self.task_event(),
        };
        event.text("task_event", task_event);
        event.set_text("stage", task_event);
        log.log(event);
    }

    /// The server's task log for one more event, unless the user's `log_rate_limit` drops
    /// it (counted as the user's `log_skipped`).
    fn task_log(&self) -> Option<&Arc<crate::log::Logger>> {
        let log = self.server.task_log.as_ref()?;
        if let Some(user) = &self.user
            && !user.take_log()
        {
            if let Some(counters) = &self.user_stats {
                crate::auth::stats::count_log_skipped(counters);
            }
            return None;
        }
        Some(log)
    }

    /// How much of a forwarded request's URI its log keeps: the user's `log_uri_max_chars`,
    /// else g3's default.
    fn uri_max_chars(&self) -> usize {
        self.user
            .as_ref()
            .and_then(|user| user.config().log_uri_max_chars)
            .unwrap_or(URI_MAX_CHARS)
    }

    /// The request being served is ready to relay (its upstream connection obtained, a
    /// kept one when `reused`; or its tunnel set up): counted for the user and its site,
    /// with the time since the gate let it through.
    pub fn count_ready(&self, reused: bool) {
        let request = usize::from(self.user_request);
        if request >= crate::auth::stats::REQUEST_TYPES.len() {
            return;
        }
        for counters in self.user_stats.iter().chain(&self.site_stats) {
            crate::auth::stats::count_ready(counters, request, reused, self.counted_at);
        }
    }

    /// The request's kept upstream connection failed and a new one took over.
    pub fn count_renew(&self) {
        let request = usize::from(self.user_request);
        if request >= crate::auth::stats::REQUEST_TYPES.len() {
            return;
        }
        for counters in self.user_stats.iter().chain(&self.site_stats) {
            counters.renew[request].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the bytes since the last call to the user's counts (and its site's), under the
    /// request they went to: at the end of each forwarded request and of the task.
    fn count_user_bytes(&mut self) {
        let notes = &self.notes;
        let now = [
            notes.bytes_up,
            notes.bytes_down,
            notes.packets_up,
            notes.packets_down,
        ];
        let before = std::mem::replace(&mut self.user_counted, now);
        let request = usize::from(self.user_request);
        if request >= crate::auth::stats::REQUEST_TYPES.len() {
            return;
        }
        let delta = std::array::from_fn(|i| now[i].saturating_sub(before[i]));
        let udp = self.notes.udp.is_some();
        for counters in self.user_stats.iter().chain(&self.site_stats) {
            counters.count_traffic(request, delta, udp, self.notes.escaper.as_ref());
        }
    }

    /// Writes a forwarded request's event (g3's `HttpForward` task): the connection's fields
    /// with this request's times, bytes and HTTP fields; the URI's password masked.
    pub fn log_request(&mut self, request: RequestLog, head: &RequestHead) {
        self.notes.in_request = false;
        self.count_user_bytes();
        if self.server.task_log.is_none() {
            return;
        }
        // Counted even when the user's log_rate_limit drops the event: the connection
        // itself is never logged in its place.
        self.notes.requests_logged += 1;
        let Some(log) = self.task_log().cloned() else {
            return;
        };
        let id = request_uuid(self.id, self.notes.requests_logged);
        log.log(self.request_event(&id, &request, head, self.notes.rsp_status));
    }

    /// A forwarded request's event under task id `id`: the connection's fields with the
    /// request's times, bytes so far and HTTP fields.
    fn request_event(
        &self,
        id: &[u8; 16],
        request: &RequestLog,
        head: &RequestHead,
        rsp_status: Option<u16>,
    ) -> Event {
        let bytes = (
            self.notes.bytes_up - request.bytes.0,
            self.notes.bytes_down - request.bytes.1,
        );
        let mut event = self.event(
            "HttpForward",
            id,
            request.started,
            request.started_at,
            bytes,
        );
        http_fields(&mut event, head, rsp_status, self.uri_max_chars());
        event
    }

    /// A `Periodic` event of a tunnel that has relayed `in_flight` (up, down) so far.
    pub fn log_periodic(&self, (up, down): (u64, u64)) {
        let Some(log) = self.task_log() else {
            return;
        };
        let bytes = (self.notes.bytes_up + up, self.notes.bytes_down + down);
        let mut event = self.task_event_with(bytes);
        event.text("task_event", "Periodic");
        event.set_text("stage", "Relaying");
        log.log(event);
    }

    /// The task log's event for this task as it ends, with g3's field names.
    fn task_event(&self) -> Event {
        self.task_event_with((self.notes.bytes_up, self.notes.bytes_down))
    }

    /// The task's event with `bytes` (up, down) moved.
    fn task_event_with(&self, bytes: (u64, u64)) -> Event {
        self.event(
            self.task_type(),
            &task_uuid(self.id),
            self.started,
            self.started_at,
            bytes,
        )
    }

    /// An event of the task with only what is known before it goes anywhere: who, where it
    /// came in, when (its `Created` event).
    fn fresh_event(&self) -> Event {
        let mut event = self.event_head(
            self.task_type(),
            task_uuid(self.id),
            "Created",
            self.started_at,
        );
        event
            .addr("server_addr", self.local_addr)
            .addr("client_addr", self.client_addr);
        event
    }

    /// The fields every event of a task begins with: its server, type, id, stage, start
    /// and user.
    fn event_head(
        &self,
        task_type: &str,
        id: [u8; 16],
        stage: &str,
        started_at: SystemTime,
    ) -> Event {
        let mut event = Event::new();
        event
            .text("server_type", &self.server.server_type)
            .text("server_name", &self.server.name)
            .text("task_type", task_type)
            .id("task_id", id)
            .text("stage", stage)
            .time("start_at", started_at)
            .opt_text("user", self.user.as_ref().map(|u| &*u.name));
        event
    }

    /// g3's `task_type` for what the task is.
    fn task_type(&self) -> &'static str {
        match self.guard.kind() {
            TaskKind::Http => "HttpForward",
            TaskKind::SocksUdp if self.notes.udp.as_ref().is_some_and(|u| u.connect) => {
                "UdpConnect"
            }
            TaskKind::SocksUdp => "UdpAssociate",
            TaskKind::Connect | TaskKind::SocksTcp | TaskKind::Stream | TaskKind::Other => {
                "TcpConnect"
            }
        }
    }

    /// The fields every task event has, for a task (or a request) of `task_type` that
    /// started at `started` and moved `bytes` (up, down).
    fn event(
        &self,
        task_type: &'static str,
        id: &[u8; 16],
        started: Instant,
        started_at: SystemTime,
        (bytes_up, bytes_down): (u64, u64),
    ) -> Event {
        let notes = &self.notes;
        let mut event = self.event_head(task_type, *id, "Finished", started_at);
        event
            .opt_text("escaper", notes.escaper.as_deref())
            .text("reason", notes.reason.get());
        match &notes.udp {
            // g3's names for a UDP task's sockets: the control connection's ends, then the
            // datagrams' (ours, the client's), then where the first one went.
            Some(udp) => {
                event
                    .addr("tcp_server_addr", self.local_addr)
                    .addr("tcp_client_addr", self.client_addr)
                    .addr("udp_listen_addr", udp.listen)
                    .addr("udp_client_addr", udp.client)
                    // g3: `udp connect` names its one target `upstream`.
                    .text(
                        if udp.connect {
                            "upstream"
                        } else {
                            "initial_peer"
                        },
                        &udp.initial_peer,
                    )
                    .int("c_rd_packets", notes.packets_up)
                    .int("c_wr_packets", notes.packets_down)
                    .int("r_rd_packets", notes.packets_down)
                    .int("r_wr_packets", notes.packets_up);
            }
            None => {
                event
                    .addr("server_addr", self.local_addr)
                    .addr("client_addr", self.client_addr);
            }
        }
        event
            .opt_host_port("upstream", notes.upstream.as_ref())
            .opt_addr("next_bound_addr", notes.bound)
            .opt_addr("next_peer_addr", notes.next_hop)
            .int("c_rd_bytes", bytes_up)
            .int("c_wr_bytes", bytes_down)
            .int("r_rd_bytes", bytes_down)
            .int("r_wr_bytes", bytes_up)
            .opt_elapsed(
                "ready_time",
                notes
                    .connected_at
                    .map(|at| at.saturating_duration_since(started)),
            )
            .elapsed("total_time", started.elapsed());
        event
    }
}

/// A forwarded request's own fields: `method`, `uri` (masked), `user_agent`, `rsp_status`.
fn http_fields(
    event: &mut Event,
    head: &RequestHead,
    rsp_status: Option<u16>,
    uri_max_chars: usize,
) {
    event
        .text("method", &head.method)
        .text("uri", &masked_uri(&head.target, uri_max_chars));
    if let Some(user_agent) = head.header("user-agent") {
        event.lossy("user_agent", user_agent);
    }
    event.opt_int("rsp_status", rsp_status.map(u64::from));
}

/// A request target as task logs show it: a password in it masked, at most `max_chars`
/// characters (borrowed when it needs neither, as nearly every one does).
fn masked_uri(target: &str, max_chars: usize) -> Cow<'_, str> {
    let mut uri = Cow::Borrowed(target);
    if let Some(scheme_end) = target.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = target[authority_start..]
            .find(['/', '?', '#'])
            .map_or(target.len(), |i| authority_start + i);
        if let Some(at) = target[authority_start..authority_end].rfind('@')
            && let Some(colon) = target[authority_start..authority_start + at].find(':')
        {
            uri.to_mut()
                .replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    // Characters, not bytes, are counted; no character is longer than 4 bytes.
    if uri.len() <= max_chars {
        return uri;
    }
    match uri.char_indices().nth(max_chars) {
        Some((cut, _)) => Cow::Owned(uri[..cut].to_string()),
        None => uri,
    }
}

impl Drop for TaskContext {
    /// The end of every task: its bytes counted, its task log written (when there is one),
    /// and a debug line.
    fn drop(&mut self) {
        let notes = &self.notes;
        let server = &self.server;
        if notes.udp.is_some() {
            server
                .udp_bytes_in
                .fetch_add(notes.bytes_up, Ordering::Relaxed);
            server
                .udp_bytes_out
                .fetch_add(notes.bytes_down, Ordering::Relaxed);
            server
                .udp_packets_in
                .fetch_add(notes.packets_up, Ordering::Relaxed);
            server
                .udp_packets_out
                .fetch_add(notes.packets_down, Ordering::Relaxed);
        } else {
            server.bytes_in.fetch_add(notes.bytes_up, Ordering::Relaxed);
            server
                .bytes_out
                .fetch_add(notes.bytes_down, Ordering::Relaxed);
        }
        self.count_user_bytes();
        let notes = &self.notes;
        // A connection whose requests were each logged has nothing more to say.
        if !(self.guard.kind() == TaskKind::Http && notes.requests_logged > 0)
            && let Some(log) = self.task_log()
        {
            log.log(self.task_event());
        }
        // After the event: a dropped one still counts as the user's `log_skipped`.
        crate::auth::stats::hold_connection(&mut self.site_stats, None);
        crate::auth::stats::hold_connection(&mut self.user_stats, None);
        // Every task ends here: build nothing unless the line will be written.
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        tracing::debug!(
            "server {}: task {} client {}{} ended after {:?}: escaper {} next hop {} bound {}, {} bytes up, {} down",
            self.server.name,
            self.id,
            self.client_addr,
            match &self.client_tls {
                Some(tls) => format!(" (tls sni {})", tls.server_name.as_deref().unwrap_or("-")),
                None => String::new(),
            },
            self.started.elapsed(),
            notes.escaper.as_deref().unwrap_or("-"),
            notes.next_hop.map_or("-".to_string(), |a| a.to_string()),
            notes.bound.map_or("-".to_string(), |a| a.to_string()),
            notes.bytes_up,
            notes.bytes_down,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{URI_MAX_CHARS, masked_uri};

    #[test]
    fn uris_in_logs_hide_passwords_and_stay_short() {
        assert_eq!(
            masked_uri("http://user:secret@example.net:8080/a?b=c", URI_MAX_CHARS),
            "http://user:***@example.net:8080/a?b=c"
        );
        assert_eq!(
            masked_uri("http://user@example.net/", URI_MAX_CHARS),
            "http://user@example.net/"
        );
        assert_eq!(
            masked_uri("/path@with:colon", URI_MAX_CHARS),
            "/path@with:colon"
        );
        assert_eq!(
            masked_uri("ftp://a:b@h/x@y", URI_MAX_CHARS),
            "ftp://a:***@h/x@y"
        );
        assert_eq!(
            masked_uri(&format!("http://h/{}", "x".repeat(2000)), URI_MAX_CHARS).len(),
            1024
        );
    }
}
