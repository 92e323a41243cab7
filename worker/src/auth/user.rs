//! One user at run time: its config and the checks a task of it goes through, in g3's order
//! (request type, then destination port and host: both must permit; user agent for HTTP).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::config::user_groups::{RedirectTo, UserConfig, stricter};
use g3proxy_shared::types::acl::ProxyRequestType;
use g3proxy_shared::types::{AclAction, GlobalSpeedLimit, RateQuota, SpeedLimit, unix_secs};
use g3proxy_shared::user_limits::{self, Bucket};

use super::limits::{AliveGuard, GroupBucket, GroupLimits};
use super::site::{Site, Sites};
use crate::error::Forbidden;
use crate::relay::RelayPolicy;

pub struct User {
    pub name: Arc<str>,
    /// Its group's name, and its type as g3's `user_type` tag has it (`Static`, `Dynamic`,
    /// `Anonymous`, `Unmanaged`).
    pub group: Arc<str>,
    pub user_type: &'static str,
    config: UserConfig,
    /// The group-wide counters and the user's key in them.
    shared: Option<(Arc<GroupLimits>, u64)>,
    /// The user's slot there, when it has a limit that needs one.
    slot: Option<usize>,
    /// Set when a newer copy of this user's config blocks it: the live tasks that still hold
    /// this copy end at their next idle check.
    blocked_since_built: AtomicBool,
    /// What the group's shared slot said of a block, as of which block epoch.
    group_block: AtomicBool,
    group_block_epoch: AtomicU64,
    /// `explicit_sites`, indexed.
    sites: Option<Sites>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User({:?})", self.name)
    }
}

impl User {
    pub fn new(
        config: UserConfig,
        group: &str,
        user_type: &'static str,
        limits: Option<&Arc<GroupLimits>>,
    ) -> User {
        let counted = config.request_alive_max > 0
            || config.request_rate_limit.is_some()
            || config.log_rate_limit.is_some()
            || config.connection_rate_limit.is_some()
            || config.tcp_all_upload_speed_limit.is_some()
            || config.tcp_all_download_speed_limit.is_some()
            || config.udp_all_upload_speed_limit.is_some()
            || config.udp_all_download_speed_limit.is_some();
        let key = user_limits::user_key(group, &config.name);
        let slot = limits
            .filter(|_| counted)
            .and_then(|limits| limits.slot(key, group, &config.name));
        if let Some(limits) = limits {
            let blocked = config.block_and_delay.is_some();
            limits.publish_block(key, group, &config.name, blocked);
        }
        User {
            shared: limits.map(|limits| (limits.clone(), key)),
            slot,
            name: config.name.as_str().into(),
            group: group.into(),
            user_type,
            blocked_since_built: AtomicBool::new(false),
            group_block: AtomicBool::new(false),
            group_block_epoch: AtomicU64::new(u64::MAX),
            sites: Sites::new(&config.explicit_sites.0),
            config,
        }
    }

    pub fn config(&self) -> &UserConfig {
        &self.config
    }

    /// The explicit site `target` belongs to, if the user has one for it.
    pub fn site_for(&self, target: &HostPort) -> Option<&Arc<Site>> {
        self.sites.as_ref()?.find(&target.host)
    }

    pub fn verify_password(&self, password: &[u8]) -> bool {
        self.config.token.verify(password)
    }

    pub fn is_expired(&self) -> bool {
        self.config
            .expire
            .is_some_and(|expire| expire.unix_secs < unix_secs(std::time::SystemTime::now()) as i64)
    }

    /// `block_and_delay`: how long a login of this user waits before it is refused.
    pub fn block_delay(&self) -> Option<Duration> {
        self.config.block_and_delay.map(|d| d.0)
    }

    /// Whether tasks holding this user must end now: blocked by its config, by a newer copy
    /// of it in this worker, or by a newer generation's config.
    pub fn is_blocked(&self) -> bool {
        if self.config.block_and_delay.is_some() || self.blocked_since_built.load(Ordering::Relaxed)
        {
            return true;
        }
        let Some((limits, key)) = &self.shared else {
            return false;
        };
        // The slot is looked at only when some block in the group changed since.
        let epoch = limits.block_epoch();
        if self.group_block_epoch.load(Ordering::Acquire) != epoch {
            let blocked = limits.blocked_by_group(*key);
            self.group_block.store(blocked, Ordering::Release);
            self.group_block_epoch.store(epoch, Ordering::Release);
        }
        self.group_block.load(Ordering::Acquire)
    }

    pub(super) fn mark_blocked(&self) {
        self.blocked_since_built.store(true, Ordering::Relaxed);
    }

    pub fn permits_client(&self, client: std::net::IpAddr) -> bool {
        self.config
            .ingress_network_filter
            .as_ref()
            .is_none_or(|acl| logged(acl.check(client), || format!("client {client}"), self))
    }

    /// The server's relay policy as this user's tasks run under it: the stricter of the
    /// user's and the server's `tcp_sock_speed_limit`, and the user's `task_idle_max_count`
    /// in place of the server's; `None` when the user changes nothing.
    pub fn relay_policy(&self, server: &RelayPolicy) -> Option<RelayPolicy> {
        let limit = self.config.tcp_sock_speed_limit;
        let idle = self.config.task_idle_max_count;
        if limit.is_none() && idle.is_none() {
            return None;
        }
        Some(RelayPolicy {
            speed_limit: stricter_limit(limit, server.speed_limit.as_ref()),
            idle_max_count: idle.unwrap_or(server.idle_max_count).max(1),
            ..*server
        })
    }

    /// The stricter of the user's `udp_sock_speed_limit` and the server's.
    pub fn udp_speed_limit(&self, server: Option<&SpeedLimit>) -> Option<SpeedLimit> {
        stricter_limit(self.config.udp_sock_speed_limit, server)
    }

    /// `proxy_request_filter`.
    pub fn check_request(&self, request: ProxyRequestType) -> Result<(), Forbidden> {
        if let Some(acl) = &self.config.proxy_request_filter {
            let (action, _) = acl.check(|r| *r == request);
            if !logged(action, || format!("request {request:?}"), self) {
                return Err(Forbidden::ProtoBanned(request));
            }
        }
        Ok(())
    }

    /// `connection_rate_limit`: one more client connection of this user.
    pub fn take_connection(&self) -> Result<(), Forbidden> {
        self.take(
            self.config.connection_rate_limit.as_ref(),
            Bucket::Connections,
        )
    }

    /// `request_rate_limit`: one more request of this user.
    pub fn take_request(&self) -> Result<(), Forbidden> {
        self.take(self.config.request_rate_limit.as_ref(), Bucket::Requests)
    }

    /// `log_rate_limit`: whether one more task log event of this user may be written.
    pub fn take_log(&self) -> bool {
        self.take(self.config.log_rate_limit.as_ref(), Bucket::Logs)
            .is_ok()
    }

    fn take(&self, quota: Option<&RateQuota>, bucket: Bucket) -> Result<(), Forbidden> {
        match (quota, &self.shared, self.slot) {
            (Some(quota), Some((limits, _)), Some(slot)) if !limits.take(slot, bucket, quota) => {
                Err(Forbidden::RateLimited(self.name.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// `tcp_all_upload_speed_limit`: the user's bytes from its clients, group-wide.
    pub fn group_upload(&self) -> Option<GroupBucket> {
        self.group_bucket(
            Bucket::TcpUpload,
            self.config
                .tcp_all_upload_speed_limit
                .as_ref()
                .map(GlobalSpeedLimit::byte_rate),
        )
    }

    /// `tcp_all_download_speed_limit`: the user's bytes toward its clients, group-wide.
    pub fn group_download(&self) -> Option<GroupBucket> {
        self.group_bucket(
            Bucket::TcpDownload,
            self.config
                .tcp_all_download_speed_limit
                .as_ref()
                .map(GlobalSpeedLimit::byte_rate),
        )
    }

    /// `udp_all_upload_speed_limit`: the user's datagrams from its clients, group-wide, as
    /// byte and packet buckets.
    pub fn group_udp_upload(&self) -> (Option<GroupBucket>, Option<GroupBucket>) {
        let limit = self.config.udp_all_upload_speed_limit.as_ref();
        (
            self.group_bucket(Bucket::UdpUpload, limit.map(GlobalSpeedLimit::byte_rate)),
            self.group_bucket(
                Bucket::UdpUploadPackets,
                limit.map(GlobalSpeedLimit::packet_rate),
            ),
        )
    }

    /// `udp_all_download_speed_limit`, as [`User::group_udp_upload`] the other way.
    pub fn group_udp_download(&self) -> (Option<GroupBucket>, Option<GroupBucket>) {
        let limit = self.config.udp_all_download_speed_limit.as_ref();
        (
            self.group_bucket(Bucket::UdpDownload, limit.map(GlobalSpeedLimit::byte_rate)),
            self.group_bucket(
                Bucket::UdpDownloadPackets,
                limit.map(GlobalSpeedLimit::packet_rate),
            ),
        )
    }

    /// The user's group-wide `bucket` of `(interval, units, burst)`, when it has a slot.
    fn group_bucket(
        &self,
        bucket: Bucket,
        rate: Option<(Duration, u64, u64)>,
    ) -> Option<GroupBucket> {
        let (limits, _) = self.shared.as_ref()?;
        GroupBucket::new(limits, self.slot?, bucket, rate?)
    }

    /// `request_alive_max`: a live request of this user, counted until the guard drops.
    pub fn acquire_alive(&self) -> Result<Option<AliveGuard>, Forbidden> {
        let max = self.config.request_alive_max;
        match (&self.shared, self.slot) {
            (Some((limits, _)), Some(slot)) if max > 0 => limits
                .acquire(slot, max)
                .map(Some)
                .ok_or_else(|| Forbidden::FullyLoaded(self.name.to_string())),
            _ => Ok(None),
        }
    }

    /// `resolve_redirection`: where the user's `target` resolves instead (a list of
    /// addresses gives its first).
    pub fn redirect(&self, target: &HostPort) -> Option<HostPort> {
        let rules = self.config.resolve_redirection.as_ref()?;
        let Host::Domain(name) = &target.host else {
            return None;
        };
        let host = match rules.redirect(&canonical_name(name))? {
            RedirectTo::Addresses(addresses) => Host::Ip(*addresses.first()?),
            RedirectTo::Name(name) => Host::Domain(name),
        };
        Some(HostPort {
            host,
            port: target.port,
        })
    }

    /// `dst_port_filter` and `dst_host_filter_set` for one target: both must permit.
    pub fn check_target(&self, target: &HostPort) -> Result<(), Forbidden> {
        let config = &self.config;
        let port_action = config
            .dst_port_filter
            .as_ref()
            .map(|acl| acl.check(|range| range.contains(target.port)).0);
        let host_action = config
            .dst_host_filter_set
            .as_ref()
            .map(|set| match &target.host {
                Host::Ip(ip) => set.check_ip(*ip),
                Host::Domain(domain) => set.check_domain(&canonical_name(domain)),
            });
        let action = [port_action, host_action]
            .into_iter()
            .flatten()
            .fold(AclAction::Permit, stricter);
        if !logged(action, || format!("target {target}"), self) {
            return Err(Forbidden::DestDenied(target.to_string()));
        }
        Ok(())
    }

    /// `http_user_agent_filter` over every `User-Agent` value of a request.
    pub fn check_user_agent<'h>(
        &self,
        values: impl Iterator<Item = &'h [u8]>,
    ) -> Result<(), Forbidden> {
        let Some(acl) = &self.config.http_user_agent_filter else {
            return Ok(());
        };
        let mut action = acl.default;
        for value in values {
            let found = acl
                .rules
                .iter()
                .filter(|(product, _)| product.found_in(value))
                .map(|(_, action)| *action)
                .reduce(stricter);
            if let Some(found) = found {
                action = found;
                if !found.is_permitted() {
                    break;
                }
            }
        }
        if !logged(action, || "user agent".to_string(), self) {
            return Err(Forbidden::UaBlocked);
        }
        Ok(())
    }
}

/// The stricter of a user's socket limit and its server's, either possibly absent.
fn stricter_limit(user: Option<SpeedLimit>, server: Option<&SpeedLimit>) -> Option<SpeedLimit> {
    match (user.filter(|l| !l.is_unlimited()), server) {
        (Some(user), Some(server)) => Some(server.stricter(&user)),
        (user, server) => user.or(server.copied()),
    }
}

/// A domain as the user's rules are written: lower case, without the root's trailing dot
/// (`Example.COM.` is `example.com`, which a rule for it must not miss).
fn canonical_name(domain: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    match trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(trimmed.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(trimmed),
    }
}

/// Whether `action` permits; the `_log` actions also write what they decided.
fn logged(action: AclAction, what: impl FnOnce() -> String, user: &User) -> bool {
    match action {
        AclAction::PermitLog => tracing::info!("user {}: {} permitted by acl", user.name, what()),
        AclAction::ForbidLog => tracing::info!("user {}: {} forbidden by acl", user.name, what()),
        _ => {}
    }
    action.is_permitted()
}
