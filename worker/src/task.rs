//! The task context: made when a connection is accepted and passed to every step after it
//! (server, escaper, relay). It carries who the client is, which server serves it, the user
//! once authenticated, and the notes a task log will print; it holds the task's place in the
//! worker's registry, so draining knows when the worker is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::auth::User;
use crate::conn::{ClientConn, TlsFacts};
use crate::context::{ServerCounters, TaskGuard, TaskKind, TaskRegistry};

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
    pub bytes_up: u64,
    pub bytes_down: u64,
}

pub struct TaskContext {
    pub id: u64,
    pub server: Arc<ServerCounters>,
    pub client_addr: SocketAddr,
    pub local_addr: SocketAddr,
    /// The user the server's gate admitted (`auth::Gate::admit`); none on servers without
    /// a user group.
    pub user: Option<Arc<User>>,
    /// What the client's TLS handshake said, when a server or port terminated it.
    pub client_tls: Option<Box<TlsFacts>>,
    pub started: Instant,
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
            client_tls: conn.tls.clone(),
            started: Instant::now(),
            notes: TaskNotes::default(),
            guard,
        }
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

    /// What the task turned out to be, for the fleet view.
    pub fn set_kind(&mut self, kind: TaskKind) {
        self.guard.set_kind(kind);
    }
}

impl Drop for TaskContext {
    /// The end of every task, at debug level until task logs arrive with the `log` section.
    fn drop(&mut self) {
        let notes = &self.notes;
        self.server
            .bytes_in
            .fetch_add(notes.bytes_up, Ordering::Relaxed);
        self.server
            .bytes_out
            .fetch_add(notes.bytes_down, Ordering::Relaxed);
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
