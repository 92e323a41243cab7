//! `type: basic` at run time: static users, dynamic users from a file re-read every
//! `refresh_interval` (a broken file keeps the last good set and says why), and the
//! anonymous user. Lookups are a read lock and a map probe; the set of dynamic users is
//! swapped whole on refresh.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use g3proxy_shared::config::UserGroupConfig;
use g3proxy_shared::config::user_groups::{
    DynamicFormat, UserConfig, UserSource, parse_dynamic_users,
};

use g3proxy_shared::ipc::worker::Published;
use g3proxy_shared::types::Token;

use super::facts::FactsTable;
use super::ldap::{Directory, Unmanaged, Verdict};
use super::limits::GroupLimits;
use super::{Fact, Login, User};
use crate::error::{AuthFailure, TaskError};

pub struct UserGroup {
    pub name: Arc<str>,
    static_users: HashMap<String, Arc<User>>,
    dynamic_users: RwLock<Arc<HashMap<String, Arc<User>>>>,
    anonymous: Option<Arc<User>>,
    source: Option<(PathBuf, DynamicFormat)>,
    refresh_interval: Duration,
    limits: Option<Arc<GroupLimits>>,
    /// Checked for names that are no user (see [`UserGroup::check_decoy`]).
    decoy: Token,
    /// The last publish applied.
    published_sequence: AtomicU64,
    /// Changes whenever the dynamic users are replaced: a session whose login is older
    /// checks that its user is still the group's.
    version: AtomicU64,
    /// A facts group's users by the facts they claim, made again when the dynamic users
    /// change; `None` for a basic group.
    facts: Option<RwLock<Arc<FactsTable>>>,
    /// An LDAP group's directory, and the users it made for names the group does not list.
    directory: Option<(Directory, Unmanaged)>,
}

fn by_name(users: impl IntoIterator<Item = User>) -> HashMap<String, Arc<User>> {
    users
        .into_iter()
        .map(|user| (user.name.to_string(), Arc::new(user)))
        .collect()
}

impl UserGroup {
    /// The group, with its dynamic users as the file holds them now (an unreadable file
    /// starts the group with none, and the refresh keeps trying).
    pub fn build(
        config: &UserGroupConfig,
        limits: Option<&Arc<GroupLimits>>,
        published: Option<&Published>,
    ) -> UserGroup {
        let basic = config.basic();
        let source = basic.source.as_ref().map(|source| match source {
            UserSource::File { path, format } => (path.clone(), *format),
        });
        let name = config.name();
        let user = |c: UserConfig, user_type| User::new(c, name, user_type, limits);
        let group = UserGroup {
            name: name.into(),
            static_users: by_name(
                basic
                    .static_users
                    .iter()
                    .cloned()
                    .map(|c| user(c, "Static")),
            ),
            dynamic_users: RwLock::new(Arc::new(HashMap::new())),
            anonymous: basic.anonymous().map(|c| Arc::new(user(c, "Anonymous"))),
            source,
            refresh_interval: basic.refresh_interval.0,
            limits: limits.cloned(),
            decoy: Token::decoy(),
            published_sequence: AtomicU64::new(0),
            version: AtomicU64::new(0),
            facts: config
                .is_facts()
                .then(|| RwLock::new(Arc::new(FactsTable::default()))),
            directory: config
                .ldap()
                .map(|keys| (Directory::new(keys), Unmanaged::default())),
        };
        group.rebuild_facts(&HashMap::new());
        // Published users first, then the source over them, as each later refresh does: a
        // publish older than the file must not bring back users the file has dropped.
        if let Some(users) = published {
            group.publish(users);
        }
        group.refresh();
        group
    }

    /// A group for a name the config lacks: nobody is let in (g3 stands in an empty group).
    pub fn empty(name: &str) -> UserGroup {
        UserGroup {
            name: name.into(),
            static_users: HashMap::new(),
            dynamic_users: RwLock::new(Arc::new(HashMap::new())),
            anonymous: None,
            source: None,
            refresh_interval: Duration::from_secs(60),
            limits: None,
            decoy: Token::decoy(),
            published_sequence: AtomicU64::new(0),
            version: AtomicU64::new(0),
            facts: None,
            directory: None,
        }
    }

    /// A user by name: static users first (they win a name clash), then dynamic ones.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        if let Some(user) = self.static_users.get(name) {
            return Some(user.clone());
        }
        let dynamic = self.dynamic_users.read().unwrap_or_else(|e| e.into_inner());
        dynamic.get(name).cloned()
    }

    /// Spends on a name that is no user the time a wrong password takes, so a refusal does
    /// not tell which names exist. Only as long as a fast-hash token: a group of crypt
    /// tokens (milliseconds each) still answers an unknown name sooner.
    pub fn check_decoy(&self, password: &[u8]) {
        std::hint::black_box(self.decoy.verify(password));
    }

    pub fn anonymous(&self) -> Option<&Arc<User>> {
        self.anonymous.as_ref()
    }

    pub fn dynamic_user_names(&self) -> Vec<String> {
        let dynamic = self.dynamic_users.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = dynamic.keys().cloned().collect();
        names.sort();
        names
    }

    /// Re-reads the source file; on any error the current users stay and the reason is
    /// logged.
    pub fn refresh(&self) {
        let Some((path, format)) = &self.source else {
            return;
        };
        let shown = path.display().to_string();
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("{shown}: cannot read: {e}"))
            .and_then(|text| {
                parse_dynamic_users(&text, *format, &shown).map_err(|e| e.to_string())
            });
        self.replace_dynamic(parsed, "refreshed");
    }

    /// Users published with `publish-user` (a JSON array): they replace the dynamic users,
    /// until the next publish or, with a `source`, its next refresh (as in g3). A publish
    /// not newer than the last one applied is ignored.
    pub fn publish(&self, published: &Published) {
        let newer = self
            .published_sequence
            .fetch_max(published.sequence, Ordering::AcqRel)
            < published.sequence;
        if !newer {
            return;
        }
        let parsed = parse_dynamic_users(&published.text, DynamicFormat::Json, "published users")
            .map_err(|e| e.to_string());
        self.replace_dynamic(parsed, "published");
    }

    /// Makes `parsed` the dynamic users. Users whose new config blocks them are marked in
    /// their old copies too, so their live tasks end.
    fn replace_dynamic(&self, parsed: Result<Vec<UserConfig>, String>, how: &str) {
        let configs = match parsed {
            Ok(configs) => configs,
            Err(error) => {
                tracing::warn!(
                    "user group {}: dynamic users not {how}, keeping the last good set: {error}",
                    self.name
                );
                return;
            }
        };
        let mut fresh = HashMap::with_capacity(configs.len());
        let mut current = self
            .dynamic_users
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut changed = 0;
        for config in configs {
            // Unchanged users keep their object (and whatever state it carries).
            let user = match current.get(&config.name) {
                Some(existing) if *existing.config() == config => existing.clone(),
                existing => {
                    changed += 1;
                    let user = Arc::new(User::new(
                        config,
                        &self.name,
                        "Dynamic",
                        self.limits.as_ref(),
                    ));
                    if let Some(old) = existing
                        && user.is_blocked()
                    {
                        old.mark_blocked();
                    }
                    user
                }
            };
            fresh.insert(user.name.to_string(), user);
        }
        let removed = current.keys().filter(|n| !fresh.contains_key(*n)).count();
        if changed + removed > 0 {
            tracing::info!(
                "user group {}: {} dynamic user(s), {changed} new or changed, {removed} removed",
                self.name,
                fresh.len()
            );
        }
        *current = Arc::new(fresh);
        self.version.fetch_add(1, Ordering::AcqRel);
        self.rebuild_facts(&current);
    }

    /// Makes the facts table of `dynamic` and the static users; called with the dynamic
    /// users' lock held, so two refreshes cannot leave the older table in place.
    fn rebuild_facts(&self, dynamic: &HashMap<String, Arc<User>>) {
        let Some(facts) = &self.facts else {
            return;
        };
        // In name order, so every worker picks the same user for a fact two users claim.
        let sorted = |users: &HashMap<String, Arc<User>>| {
            let mut users: Vec<Arc<User>> = users.values().cloned().collect();
            users.sort_by(|a, b| a.name.cmp(&b.name));
            users
        };
        let (dynamic, static_users) = (sorted(dynamic), sorted(&self.static_users));
        let table = FactsTable::build(dynamic.iter(), static_users.iter());
        *facts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// See `version`.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn is_ldap(&self) -> bool {
        self.directory.is_some()
    }

    /// An LDAP group's login: a user the group lists (or, with `unmanaged_user`, any name),
    /// whose password the directory accepts.
    pub async fn ldap_login(&self, login: &Login<'_>) -> Result<Arc<User>, TaskError> {
        let Some((directory, unmanaged)) = &self.directory else {
            return Err(TaskError::Internal("not an ldap group".into()));
        };
        // Directories match names regardless of case and outer spaces: so must we, or
        // `ALICE` would bind as alice and escape alice's own keys as an unmanaged user.
        let name = login.user.trim().to_lowercase();
        let listed = self.user(&name).or_else(|| self.user_ignoring_case(&name));
        let unknown = || TaskError::Auth(AuthFailure::UnknownUser(login.user.to_string()));
        if listed.is_none() && directory.unmanaged_user(&name).is_none() {
            return Err(unknown());
        }
        match directory.check(&name, login.password).await {
            Verdict::Accepted => {}
            Verdict::Refused => {
                return Err(TaskError::Auth(AuthFailure::WrongPassword(
                    login.user.to_string(),
                )));
            }
            Verdict::Unknown(reason) => {
                return Err(TaskError::Auth(AuthFailure::DirectoryFailed(
                    login.user.to_string(),
                    reason,
                )));
            }
        }
        if let Some(user) = listed {
            return Ok(user);
        }
        unmanaged
            .get_or_make(&name, || {
                let config = directory.unmanaged_user(&name)?;
                Some(User::new(
                    config,
                    &self.name,
                    "Unmanaged",
                    self.limits.as_ref(),
                ))
            })
            .ok_or_else(unknown)
    }

    /// A listed user whose name differs from `lowercase` only in case.
    fn user_ignoring_case(&self, lowercase: &str) -> Option<Arc<User>> {
        let matches = |users: &HashMap<String, Arc<User>>| {
            users
                .iter()
                .find(|(name, _)| name.to_lowercase() == lowercase)
                .map(|(_, user)| user.clone())
        };
        matches(&self.static_users).or_else(|| {
            let dynamic = self.dynamic_users.read().unwrap_or_else(|e| e.into_inner());
            matches(&dynamic)
        })
    }

    /// Whether `user` is what the group has under its name now: listed, anonymous, or (in an
    /// LDAP group) the unmanaged user made for it.
    pub fn is_current(&self, user: &Arc<User>) -> bool {
        let listed = self
            .user(&user.name)
            .is_some_and(|current| Arc::ptr_eq(&current, user));
        listed
            || self
                .anonymous()
                .is_some_and(|anonymous| Arc::ptr_eq(anonymous, user))
            || self
                .directory
                .as_ref()
                .is_some_and(|(_, unmanaged)| unmanaged.holds(user))
    }

    /// A facts group's user for `fact` (no anonymous user here); `None` in a basic group.
    pub fn user_by_fact(&self, fact: &Fact<'_>) -> Option<Arc<User>> {
        let facts = self.facts.as_ref()?;
        let table = facts.read().unwrap_or_else(|e| e.into_inner()).clone();
        table.user(fact)
    }

    /// Refreshes the dynamic users every `refresh_interval` for as long as the worker runs.
    pub fn spawn_refresh(self: &Arc<Self>) {
        if self.source.is_none() {
            return;
        }
        let group = Arc::downgrade(self);
        let interval = self.refresh_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(group) = group.upgrade() else {
                    return;
                };
                // Reading a file is blocking work; keep it off the proxy's threads.
                let done = tokio::task::spawn_blocking(move || group.refresh()).await;
                if done.is_err() {
                    return;
                }
            }
        });
    }
}
