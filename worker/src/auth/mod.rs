//! Users: who a task's client is, and what it may reach. A server holds a [`Gate`] built
//! from its `user_group` (an open gate without one). The gate admits a connection's user
//! ([`Gate::admit`]: a password login checked against a basic group's tokens or an LDAP
//! group's directory; [`Gate::admit_connection`]: a stream server's user found by a facts
//! group; then expiry, the user's ingress filter, `block_and_delay`, its connection rate)
//! and notes the user on the task; then, for each target, it gives the [`Permit`] every
//! escaper operation requires ([`Gate::permit`]: the user's request, port and host filters,
//! its request rate, its place among its live requests). A permit cannot be made anywhere
//! else, so no server can reach an escaper without passing its gate; and a gate with a group
//! gives none to a task whose user it did not admit. The limits that count over the whole
//! group of processes are in `limits.rs` (and `g3proxy_shared::user_limits`).

mod basic;
mod facts;
mod ldap;
mod limits;
mod site;
pub mod stats;
mod user;

pub use basic::UserGroup;
pub use limits::{GroupBucket, GroupLimits};
pub use site::Site;
pub use user::User;

use std::sync::Arc;

use g3proxy_proto::HostPort;
use g3proxy_shared::config::servers::{FactsMatch, UpstreamKeepalive};
use g3proxy_shared::types::acl::ProxyRequestType;

use crate::error::{AuthFailure, Forbidden, TaskError};
use crate::task::TaskContext;
use limits::AliveGuard;

/// Leave to connect to one target: made only by [`Gate::permit`]. It holds the user's
/// place under `request_alive_max` until it drops.
pub struct Permit<'t> {
    target: &'t HostPort,
    /// Who asks (for routes on the client, the hashing pick policies and what divert_tcp
    /// tells its next hop): the client, where it came in, the task, the user.
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
    task_id: u64,
    user: Option<Arc<User>>,
    /// The target as the user's `resolve_redirection` has it resolved.
    resolve_as: Option<HostPort>,
    /// The user's explicit site for the target.
    site: Option<Arc<Site>>,
    /// The path the request picks for an escaper (see `Leg::egress_path`).
    egress_path: Option<(Arc<str>, usize)>,
    _alive: Option<AliveGuard>,
    _counted: Option<stats::AliveCount>,
}

/// What a request's checks leave it: while it runs, its place under the user's
/// `request_alive_max` and in `user.request.alive` (when it counts); the user's explicit
/// site for its target.
#[derive(Default)]
struct Checked {
    alive: Option<AliveGuard>,
    counted: Option<stats::AliveCount>,
    site: Option<Arc<Site>>,
}

impl<'t> Permit<'t> {
    fn new(task: &TaskContext, target: &'t HostPort, checked: Checked) -> Permit<'t> {
        Permit {
            target,
            client: task.client_addr,
            server: task.local_addr,
            task_id: task.id,
            user: task.user.clone(),
            resolve_as: task.user.as_ref().and_then(|u| u.redirect(target)),
            site: checked.site,
            egress_path: task.egress_path.clone(),
            _alive: checked.alive,
            _counted: checked.counted,
        }
    }

    /// The user's `http_upstream_keepalive`, bounding the server's reuse of kept upstream
    /// connections for its requests.
    pub fn user_upstream_keepalive(&self) -> Option<UpstreamKeepalive> {
        self.user.as_ref()?.config().http_upstream_keepalive
    }

    pub fn egress_path(&self) -> Option<(&str, usize)> {
        self.egress_path.as_ref().map(|(name, id)| (&**name, *id))
    }

    /// Whether connections made for this permit may differ from anyone else's: the user's
    /// settings that shape how an escaper connects (or its site's), or a path choice. A
    /// pool shared by all clients must neither give such a task a kept connection nor keep
    /// its own.
    pub fn shapes_connections(&self) -> bool {
        let user = self.user.as_ref().map(|user| user.config());
        self.egress_path.is_some()
            || self
                .site
                .as_ref()
                .is_some_and(|site| site.resolve_strategy.is_some())
            || user.is_some_and(|user| {
                user.resolve_strategy.is_some()
                    || user.tcp_connect.is_some()
                    || user.tcp_remote_keepalive.is_some()
                    || user.tcp_remote_misc_opts.is_some()
                    || user.egress_path_id_map.is_some()
                    || user.egress_path_value_map.is_some()
            })
    }

    /// The user's explicit site for the target.
    pub fn site(&self) -> Option<&Site> {
        self.site.as_deref()
    }

    pub fn target(&self) -> &'t HostPort {
        self.target
    }

    pub fn client(&self) -> std::net::SocketAddr {
        self.client
    }

    pub fn server(&self) -> std::net::SocketAddr {
        self.server
    }

    pub fn task_id(&self) -> u64 {
        self.task_id
    }

    pub fn user(&self) -> Option<&User> {
        self.user.as_deref()
    }

    /// Where the user's `resolve_redirection` sends the target's name, if it does: what an
    /// escaper that resolves names itself connects to instead.
    pub fn redirected(&self) -> Option<&HostPort> {
        self.resolve_as.as_ref()
    }
}

/// A request's place among its user's live requests (see [`Gate::hold_request`]).
pub struct RequestHold {
    _counted: Checked,
}

/// What a facts group finds a connection's user by.
pub enum Fact<'a> {
    Ip(std::net::IpAddr),
    Host(&'a g3proxy_proto::Host),
}

impl std::fmt::Display for Fact<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fact::Ip(ip) => write!(f, "address {ip}"),
            Fact::Host(host) => write!(f, "server name {host}"),
        }
    }
}

/// A password login as the client sent it.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
}

#[derive(Clone, Default)]
pub struct Gate {
    group: Option<Arc<UserGroup>>,
    /// For a stream server's facts group: what it finds a connection's user by.
    facts: Option<FactsMatch>,
}

impl Gate {
    /// A password server's gate (open without a group).
    pub fn new(group: Option<Arc<UserGroup>>) -> Gate {
        Gate { group, facts: None }
    }

    /// A stream server's gate: its facts group when `auth_by_*` is on, else open (a group
    /// without `auth_by_*` has no effect, as in g3).
    pub fn by_facts(group: Option<Arc<UserGroup>>, facts: Option<FactsMatch>) -> Gate {
        match facts {
            Some(facts) => Gate {
                group,
                facts: Some(facts),
            },
            None => Gate::default(),
        }
    }

    /// A stream server's connection: its user found by the gate's fact (the client's
    /// address, the address it reached, or `server_name`, the host it asks for).
    pub async fn admit_connection(
        &self,
        task: &mut TaskContext,
        server_name: Option<&g3proxy_proto::Host>,
    ) -> Result<(), TaskError> {
        let fact = match (self.facts, server_name) {
            (None, _) => return Ok(()),
            (Some(FactsMatch::ClientIp), _) => Fact::Ip(task.client_addr.ip()),
            (Some(FactsMatch::ServerIp), _) => Fact::Ip(task.local_addr.ip()),
            (Some(FactsMatch::ServerName), Some(host)) => Fact::Host(host),
            (Some(FactsMatch::ServerName), None) => {
                return Err(TaskError::Internal(
                    "no server name to find a user by".into(),
                ));
            }
        };
        self.admit_by_fact(task, fact).await
    }

    /// Whether clients must be admitted before they get a permit.
    pub fn has_users(&self) -> bool {
        self.group.is_some()
    }

    /// Whether `user` is still what the group has under its name (not dropped or replaced
    /// by a refresh or a publish since it was admitted).
    pub fn is_current(&self, user: &Arc<User>) -> bool {
        self.group
            .as_ref()
            .is_none_or(|group| group.is_current(user))
    }

    /// A number that changes when the group's users may have (see `UserGroup::version`).
    pub fn users_version(&self) -> u64 {
        self.group.as_ref().map_or(0, |group| group.version())
    }

    /// Whether a client that sends no credentials is let in from `client` (SOCKS5 method
    /// choice, SOCKS4): no group, or an anonymous user whose ingress filter takes it.
    pub fn takes_anonymous(&self, client: std::net::IpAddr) -> bool {
        match &self.group {
            None => true,
            Some(group) => group
                .anonymous()
                .is_some_and(|user| user.permits_client(client)),
        }
    }

    /// Checks `login` (or its absence) and notes the user on the task. Unknown names and
    /// clients without credentials get the anonymous user when the group has one, as in g3
    /// (in an LDAP group, an unknown name is refused: its password is the directory's).
    pub async fn admit(
        &self,
        task: &mut TaskContext,
        login: Option<Login<'_>>,
    ) -> Result<(), TaskError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let user = match &login {
            Some(login) if group.is_ldap() => group.ldap_login(login).await?,
            Some(login) => match group.user(login.user) {
                Some(user) => {
                    if !user.verify_password(login.password) {
                        let refused =
                            TaskError::Auth(AuthFailure::WrongPassword(user.name.to_string()));
                        stats::count_refusal(&stats::counters(&user, &task.server), &refused);
                        return Err(refused);
                    }
                    user
                }
                None => match group.anonymous() {
                    Some(anonymous) => anonymous.clone(),
                    None => {
                        // As long as a wrong password of a real user (fast-hash tokens).
                        group.check_decoy(login.password);
                        return Err(TaskError::Auth(AuthFailure::UnknownUser(
                            login.user.to_string(),
                        )));
                    }
                },
            },
            None => group
                .anonymous()
                .cloned()
                .ok_or(TaskError::Auth(AuthFailure::NoCredentials))?,
        };
        Self::admit_user(task, user).await
    }

    /// For a facts group (`auth_by_*`): the user that `fact` names, else the anonymous user.
    async fn admit_by_fact(&self, task: &mut TaskContext, fact: Fact<'_>) -> Result<(), TaskError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let user = group
            .user_by_fact(&fact)
            .or_else(|| group.anonymous().cloned())
            .ok_or_else(|| TaskError::Auth(AuthFailure::NoMatchingUser(fact.to_string())))?;
        Self::admit_user(task, user).await
    }

    /// What every login checks once the user is known: expiry, the user's ingress filter,
    /// a block (after its delay), the user's connection rate.
    async fn admit_user(task: &mut TaskContext, user: Arc<User>) -> Result<(), TaskError> {
        // The same user logging in again on its connection keeps its counts (no lookup).
        let counters = match &task.user_stats {
            Some(known)
                if Arc::ptr_eq(&known.user, &user.name) && *known.server == *task.server_name() =>
            {
                known.clone()
            }
            _ => stats::counters(&user, &task.server),
        };
        let admitted = Self::check_login(task, &user).await;
        if let Err(error) = &admitted {
            stats::count_refusal(&counters, error);
            return admitted;
        }
        // A keep-alive connection logs in again with each request: one connection counted.
        let same = task
            .user_stats
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &counters));
        if !same {
            stats::hold_connection(&mut task.site_stats, None);
            stats::hold_connection(&mut task.user_stats, Some(counters));
        }
        task.user = Some(user);
        Ok(())
    }

    async fn check_login(task: &TaskContext, user: &Arc<User>) -> Result<(), TaskError> {
        if user.is_expired() {
            return Err(TaskError::Auth(AuthFailure::Expired(user.name.to_string())));
        }
        if !user.permits_client(task.client_addr.ip()) {
            return Err(TaskError::Auth(AuthFailure::ClientIpBlocked(
                user.name.to_string(),
            )));
        }
        if let Some(delay) = user.block_delay() {
            // Whoever holds a blocked user's password waits before learning anything.
            tokio::time::sleep(delay).await;
            return Err(TaskError::Policy(Forbidden::UserBlocked(
                user.name.to_string(),
            )));
        }
        user.take_connection().map_err(TaskError::Policy)
    }

    /// The user admitted on `task`, checked for a block or expiry since; `None` without a
    /// group.
    fn live_user<'u>(&self, task: &'u TaskContext) -> Result<Option<&'u Arc<User>>, TaskError> {
        match (&self.group, &task.user) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(TaskError::Internal(
                "a task asked for a permit before its user was admitted".into(),
            )),
            (Some(_), Some(user)) => {
                if user.is_blocked() {
                    return Err(TaskError::Policy(Forbidden::UserBlocked(
                        user.name.to_string(),
                    )));
                }
                // A login admitted earlier on a keep-alive connection may have expired since.
                if user.is_expired() {
                    return Err(TaskError::Auth(AuthFailure::Expired(user.name.to_string())));
                }
                Ok(Some(user))
            }
        }
    }

    /// The checks of a request, in g3's order: the request type, the target's port and host,
    /// then (when `counts`: a new request, not one more target of a request already counted)
    /// the user's request rate and its place among its live requests, held by the guard.
    fn check(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
        target: Option<&HostPort>,
        counts: bool,
    ) -> Result<Checked, TaskError> {
        let checked = self.counted_check(task, request, target, counts);
        match &checked {
            // The user's refusals, counted as theirs (`user.forbidden.*`).
            Err(error) => {
                if let Some(counters) = &task.user_stats {
                    stats::count_refusal(counters, error);
                }
            }
            Ok(_) if counts => task.log_created(target),
            Ok(_) => {}
        }
        checked
    }

    fn counted_check(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
        target: Option<&HostPort>,
        counts: bool,
    ) -> Result<Checked, TaskError> {
        let Some(user) = self.live_user(task)? else {
            return Ok(Checked::default());
        };
        let alive = Self::check_user(user, request, target, counts)?;
        let site = target.and_then(|target| user.site_for(target)).cloned();
        let Some(counters) = task.user_stats.clone().filter(|_| counts) else {
            return Ok(Checked {
                alive,
                counted: None,
                site,
            });
        };
        let index = stats::request_index(request);
        task.user_request = index as u8;
        task.counted_at = std::time::Instant::now();
        let site_counters = match &site {
            Some(site) if site.emit_stats => Some(Self::site_counters(task, &counters, site)),
            _ => {
                stats::hold_connection(&mut task.site_stats, None);
                None
            }
        };
        Ok(Checked {
            alive,
            counted: Some(stats::AliveCount::start(&counters, site_counters, index)),
            site,
        })
    }

    /// The counts of the user's `site` on this task's server: the task's own when its last
    /// request went there too, else looked up (and the site's connection counted, once per
    /// site a connection's requests go to in a row).
    fn site_counters(
        task: &mut TaskContext,
        counters: &stats::UserCounters,
        site: &Site,
    ) -> Arc<stats::UserCounters> {
        if let Some(known) = &task.site_stats
            && known.site.as_deref() == Some(&*site.id)
        {
            return known.clone();
        }
        let site_counters = stats::site_counters(counters, site);
        stats::hold_connection(&mut task.site_stats, Some(site_counters.clone()));
        site_counters
    }

    fn check_user(
        user: &User,
        request: Option<ProxyRequestType>,
        target: Option<&HostPort>,
        counts: bool,
    ) -> Result<Option<AliveGuard>, TaskError> {
        if let Some(request) = request {
            user.check_request(request).map_err(TaskError::Policy)?;
        }
        if let Some(target) = target {
            user.check_target(target).map_err(TaskError::Policy)?;
        }
        if !counts {
            return Ok(None);
        }
        user.take_request().map_err(TaskError::Policy)?;
        user.acquire_alive().map_err(TaskError::Policy)
    }

    /// A request with no single target yet (a SOCKS UDP association, a stream server trying
    /// its upstreams in turn), held until the returned hold drops. Its targets then each need
    /// [`Gate::permit_within`].
    pub fn hold_request(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
    ) -> Result<RequestHold, TaskError> {
        let alive = self.check(task, request, None, true)?;
        Ok(RequestHold { _counted: alive })
    }

    /// Leave for the task to go to `target` for `request` (`None`: a stream server's
    /// connection, which no request filter names).
    pub fn permit<'t>(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
        target: &'t HostPort,
    ) -> Result<Permit<'t>, TaskError> {
        let alive = self.check(task, request, Some(target), true)?;
        Ok(Permit::new(task, target, alive))
    }

    /// A request counted before its target was known (a SOCKS UDP association): counted
    /// for the user's explicit site of `target` too, when it has one with `emit_stats`, and
    /// its bytes and datagrams go there as it ends. The answer holds its place in the site's
    /// `request.alive` while the request lives.
    pub fn count_site(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
        target: &HostPort,
    ) -> Option<stats::AliveCount> {
        let (user, counters) = (task.user.clone()?, task.user_stats.clone()?);
        let site = user.site_for(target).filter(|site| site.emit_stats)?;
        let site_counters = Self::site_counters(task, &counters, site);
        Some(stats::AliveCount::site_only(
            site_counters,
            stats::request_index(request),
        ))
    }

    /// Leave for one more target within a request already counted (the datagrams of a SOCKS
    /// UDP association): the user's filters only, which every target must pass.
    pub fn permit_within<'t>(
        &self,
        task: &mut TaskContext,
        request: Option<ProxyRequestType>,
        target: &'t HostPort,
    ) -> Result<Permit<'t>, TaskError> {
        let checked = self.check(task, request, Some(target), false)?;
        Ok(Permit::new(task, target, checked))
    }
}
