//! The one error of a proxy task, saying who failed: the client, the upstream, the resolver,
//! a policy (with the policy named), or us. Servers turn it into an HTTP status or a SOCKS
//! reply and a log line; metrics will count by the same variants.

use std::io;
use std::net::IpAddr;

use g3proxy_proto::socks5::Reply;
use g3proxy_shared::types::acl::ProxyRequestType;

use crate::task::TaskContext;

/// Why a policy refused a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("egress to {0} is forbidden")]
    EgressAddress(IpAddr),
    #[error("escaper {0:?} does not exist")]
    MissingEscaper(String),
    #[error("escaper {0:?} denies every task (dummy_deny)")]
    DeniedByEscaper(String),
    #[error("https forward is not enabled on this server")]
    HttpsForward,
    /// `block_and_delay`.
    #[error("user {0:?} is blocked")]
    UserBlocked(String),
    /// The user's `proxy_request_filter`.
    #[error("request type {0:?} is not allowed for this user")]
    ProtoBanned(ProxyRequestType),
    /// The user's `dst_port_filter` or `dst_host_filter_set`.
    #[error("destination {0} is denied for this user")]
    DestDenied(String),
    /// The user's `http_user_agent_filter`.
    #[error("user agent is blocked for this user")]
    UaBlocked,
    /// The user's `request_rate_limit` or `connection_rate_limit`, over the whole group.
    #[error("user {0:?} is over its rate limit")]
    RateLimited(String),
    /// The user's `request_alive_max`, over the whole group.
    #[error("user {0:?} has request_alive_max requests alive")]
    FullyLoaded(String),
}

/// Why a login was refused. Names the user; never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials")]
    NoCredentials,
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for user {0:?}")]
    WrongPassword(String),
    #[error("user {0:?} has expired")]
    Expired(String),
    /// The directory of an LDAP group could not say (down, slow, an odd answer).
    #[error("user {0:?} not checked: the ldap server {1}")]
    DirectoryFailed(String, String),
    /// A facts group has no user (and no anonymous user) for the connection.
    #[error("no user for {0}")]
    NoMatchingUser(String),
    /// The user's own `ingress_network_filter`.
    #[error("user {0:?} may not connect from this address")]
    ClientIpBlocked(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("client: {0}")]
    Client(String),
    #[error("client i/o: {0}")]
    ClientIo(io::Error),
    #[error("client: request head too large")]
    ClientHeadTooLarge,
    #[error("client: {0}")]
    ClientSocks(g3proxy_proto::socks5::Socks5Error),
    #[error("client timed out during {0}")]
    ClientTimeout(&'static str),
    /// The request already passed through this proxy (its own name in `Via`).
    #[error("client: request loops back through this proxy ({0})")]
    LoopDetected(String),
    #[error("resolver: {0}")]
    Resolver(String),
    #[error("policy: {0}")]
    Policy(Forbidden),
    /// The user check failed: 407 from a proxy, 401 from a gateway, RFC 1929 failure.
    #[error("auth: {0}")]
    Auth(AuthFailure),
    #[error("upstream refused the connection: {0}")]
    UpstreamRefused(io::Error),
    #[error("upstream connect timed out")]
    UpstreamConnectTimeout,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(io::Error),
    #[error("upstream i/o: {0}")]
    UpstreamIo(io::Error),
    #[error("upstream protocol: {0}")]
    UpstreamProtocol(String),
    #[error("upstream timed out during {0}")]
    UpstreamTimeout(&'static str),
    #[error("upstream tls: {0}")]
    UpstreamTls(io::Error),
    #[error("internal: {0}")]
    Internal(String),
    /// An escaper asked for an operation its type does not have (udp through an HTTP
    /// proxy); [`crate::escapers`] names the escaper before it reaches a log.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl TaskError {
    pub fn forbidden_ip(ip: IpAddr) -> Self {
        TaskError::Policy(Forbidden::EgressAddress(ip))
    }

    /// The HTTP status a proxy answers with, g3proxy's custom codes included.
    pub fn http_status(&self) -> (u16, &'static str) {
        match self {
            TaskError::Client(_) | TaskError::ClientIo(_) | TaskError::ClientSocks(_) => {
                (400, "Bad Request")
            }
            TaskError::ClientHeadTooLarge => (431, "Request Header Fields Too Large"),
            TaskError::ClientTimeout(_) => (408, "Request Timeout"),
            TaskError::LoopDetected(_) => (508, "Loop Detected"),
            TaskError::Policy(Forbidden::ProtoBanned(_)) => (405, "Method Not Allowed"),
            TaskError::Policy(Forbidden::RateLimited(_) | Forbidden::FullyLoaded(_)) => {
                (429, "Too Many Requests")
            }
            TaskError::Policy(_) => (403, "Forbidden"),
            TaskError::Auth(_) => (407, "Proxy Authentication Required"),
            TaskError::Resolver(_) => (530, "Resolve Failed"),
            TaskError::UpstreamRefused(_) => (521, "Web Server Is Down"),
            TaskError::UpstreamConnectTimeout => (522, "Connection Timed Out"),
            TaskError::UpstreamUnreachable(_) => (523, "Origin Is Unreachable"),
            TaskError::UpstreamTimeout(_) => (504, "Gateway Timeout"),
            TaskError::UpstreamTls(_) => (525, "SSL Handshake Failed"),
            TaskError::UpstreamIo(_) | TaskError::UpstreamProtocol(_) => (502, "Bad Gateway"),
            TaskError::Internal(_) => (500, "Internal Server Error"),
            TaskError::Unsupported(_) => (501, "Not Implemented"),
        }
    }

    pub fn socks_reply(&self) -> Reply {
        match self {
            TaskError::Policy(_) | TaskError::Auth(_) => Reply::NotAllowed,
            TaskError::Resolver(_) => Reply::HostUnreachable,
            TaskError::UpstreamRefused(_) => Reply::ConnectionRefused,
            TaskError::UpstreamConnectTimeout => Reply::TtlExpired,
            TaskError::UpstreamUnreachable(_) => Reply::NetworkUnreachable,
            TaskError::Unsupported(_) => Reply::CommandNotSupported,
            _ => Reply::GeneralFailure,
        }
    }

    /// Logs a task that ended in error (malformed client input always: operators want to
    /// see it; everything else when asked for, `-v`) and counts refusals for the metrics.
    pub fn log(&self, task: &TaskContext) {
        task.notes.reason.set(self.reason());
        let forbidden = match self {
            TaskError::Auth(_) => Some(&task.server.auth_failed),
            TaskError::Policy(Forbidden::DestDenied(_)) => Some(&task.server.dest_denied),
            TaskError::Policy(Forbidden::UserBlocked(_)) => Some(&task.server.user_blocked),
            _ => None,
        };
        if let Some(counter) = forbidden {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let user = task.user.as_ref().map_or("-", |u| &*u.name);
        let (server, id, client) = (task.server_name(), task.id, task.client_addr);
        match self {
            TaskError::Client(_)
            | TaskError::ClientHeadTooLarge
            | TaskError::ClientSocks(_)
            | TaskError::LoopDetected(_) => {
                tracing::warn!("server {server}: task {id} client {client} user {user}: {self}")
            }
            _ => tracing::info!("server {server}: task {id} client {client} user {user}: {self}"),
        }
    }

    /// Why the task ended, as g3's task logs say it (`ServerTaskError`).
    pub fn reason(&self) -> &'static str {
        match self {
            TaskError::Client(_)
            | TaskError::ClientHeadTooLarge
            | TaskError::ClientSocks(_)
            | TaskError::LoopDetected(_) => "InvalidClientProtocol",
            TaskError::ClientIo(_) => "ClientTcpReadFailed",
            TaskError::ClientTimeout(_) => "ClientAppTimeout",
            TaskError::Resolver(_) => "UpstreamNotResolved",
            TaskError::Policy(_) => "ForbiddenByRule",
            TaskError::Auth(_) => "ClientAuthFailed",
            TaskError::UpstreamRefused(_)
            | TaskError::UpstreamConnectTimeout
            | TaskError::UpstreamUnreachable(_) => "UpstreamNotConnected",
            TaskError::UpstreamIo(_) => "UpstreamReadFailed",
            TaskError::UpstreamProtocol(_) | TaskError::UpstreamTls(_) => "UpstreamAppError",
            TaskError::UpstreamTimeout(_) => "UpstreamAppTimeout",
            TaskError::Internal(_) => "InternalServerError",
            TaskError::Unsupported(_) => "UnimplementedProtocol",
        }
    }

    /// g3's brief (`TcpConnectError::brief`) for a TCP connection that could not be made,
    /// the escape log's `reason`; `None` for what g3 does not escape-log (a lookup, a
    /// policy, what went wrong after the connection was made).
    pub fn connect_brief(&self) -> Option<&'static str> {
        match self {
            TaskError::UpstreamRefused(_) | TaskError::UpstreamUnreachable(_) => {
                Some("ConnectFailed")
            }
            TaskError::UpstreamConnectTimeout => Some("TimeoutByRule"),
            _ => None,
        }
    }

    /// A next-hop proxy answered 407: the escaper's credentials are missing or wrong.
    pub fn next_hop_wants_credentials() -> Self {
        TaskError::UpstreamProtocol(
            "the next-hop proxy wants credentials (407): check proxy_username and proxy_password"
                .into(),
        )
    }

    /// Connect errors sorted by what they say about the upstream.
    pub fn from_connect(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => TaskError::UpstreamRefused(error),
            io::ErrorKind::TimedOut => TaskError::UpstreamConnectTimeout,
            io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
                TaskError::UpstreamUnreachable(error)
            }
            _ => TaskError::UpstreamUnreachable(error),
        }
    }
}
