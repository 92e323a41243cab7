//! `type: ldap` at run time: a user's password is what the directory accepts in a simple
//! bind as `{username_attribute}={name},{base dn}` (the name escaped, so it cannot reach
//! another entry). A connection per bind, TLS from the first byte for `ldaps://`. An
//! accepted password is remembered (a keyed digest, never the password) for
//! `cache_expire_time`, for at most `cache_user_count` users, so keep-alive clients and
//! repeated logins cost no round trip. An empty password is refused without asking: LDAP
//! would take it as an anonymous bind and say yes.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use g3proxy_proto::{Host, ldap};
use g3proxy_shared::config::tls::TlsClientConfig;
use g3proxy_shared::config::user_groups::{LdapKeys, UserConfig};
use g3proxy_shared::types::{Token, constant_time_eq, password_digest};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::conn::{self, Stream, write_all};

/// What the directory said of a password.
pub enum Verdict {
    Accepted,
    Refused,
    /// The directory could not be asked, or answered something else.
    Unknown(String),
}

pub struct Directory {
    keys: LdapKeys,
    /// `ldaps://` without `tls_client`: the system's CA certificates, read on first use
    /// (a failure is tried again next time).
    system_tls: OnceLock<TlsClientConfig>,
    /// Binds in flight at once (`queue_channel_size`); a login waits for a turn at most
    /// `queue_wait_timeout`, so a flood of wrong passwords is no flood at the directory.
    binds: tokio::sync::Semaphore,
    digest_key: [u8; 32],
    accepted: Mutex<HashMap<String, ([u8; 32], Instant)>>,
    next_message_id: AtomicU32,
}

impl Directory {
    pub fn new(keys: &LdapKeys) -> Directory {
        // The digests never leave this process; a random key only makes them worthless to
        // whoever reads its memory.
        let mut digest_key = [0u8; 32];
        if let Err(error) = std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut digest_key))
        {
            tracing::warn!("no random key for remembered ldap passwords: {error}");
        }
        Directory {
            keys: keys.clone(),
            system_tls: OnceLock::new(),
            binds: tokio::sync::Semaphore::new(keys.queue_channel_size.unwrap_or(64).max(1)),
            digest_key,
            accepted: Mutex::new(HashMap::new()),
            next_message_id: AtomicU32::new(1),
        }
    }

    /// The user config of names the directory accepts and the group does not list.
    pub fn unmanaged_user(&self, name: &str) -> Option<UserConfig> {
        let mut config = self.keys.unmanaged_user.clone()?;
        config.name = name.to_string();
        config.token = Token::Unchecked;
        Some(config)
    }

    pub async fn check(&self, name: &str, password: &[u8]) -> Verdict {
        if password.is_empty() {
            return Verdict::Refused;
        }
        let digest = password_digest(&self.digest_key, password);
        let now = Instant::now();
        {
            let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, since)) = accepted.get(name)
                && now.duration_since(*since) < self.keys.cache_expire()
                && constant_time_eq(known, &digest)
            {
                return Verdict::Accepted;
            }
        }
        let turn = tokio::time::timeout(self.keys.queue_wait_timeout.0, self.binds.acquire()).await;
        let Ok(Ok(_turn)) = turn else {
            return Verdict::Unknown("too many binds waiting (queue_wait_timeout)".into());
        };
        let verdict = match self.bind(name, password).await {
            Ok(true) => Verdict::Accepted,
            Ok(false) => Verdict::Refused,
            Err(reason) => Verdict::Unknown(reason),
        };
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        match verdict {
            Verdict::Accepted => {
                if accepted.len() >= self.keys.cache_user_count && !accepted.contains_key(name) {
                    // Full: the oldest goes.
                    let oldest = accepted
                        .iter()
                        .min_by_key(|(_, (_, since))| *since)
                        .map(|(name, _)| name.clone());
                    if let Some(oldest) = oldest {
                        accepted.remove(&oldest);
                    }
                }
                if self.keys.cache_user_count > 0 {
                    accepted.insert(name.to_string(), (digest, now));
                }
            }
            // A wrong try by someone else must not cost the user its remembered login.
            Verdict::Refused | Verdict::Unknown(_) => {}
        }
        verdict
    }

    /// One simple bind: whether the directory accepts `password` for `name`.
    async fn bind(&self, name: &str, password: &[u8]) -> Result<bool, String> {
        let keys = &self.keys;
        let server = &keys.ldap_url;
        let dn = format!(
            "{}={},{}",
            keys.username_attribute,
            ldap::escape_dn_value(name),
            server.base_dn
        );
        let port = server.address.port;
        let connect = async {
            match &server.address.host {
                Host::Ip(ip) => TcpStream::connect((*ip, port)).await,
                Host::Domain(domain) => TcpStream::connect((domain.as_str(), port)).await,
            }
        };
        let tcp = tokio::time::timeout(keys.connect_timeout.0, connect)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream = match server.tls {
            false => Stream::plain(tcp),
            true => {
                let config = match (&keys.tls_client, self.system_tls.get()) {
                    (Some(config), _) | (None, Some(config)) => config,
                    (None, None) => {
                        let config =
                            TlsClientConfig::defaults().map_err(|e| format!("tls client: {e}"))?;
                        self.system_tls.get_or_init(|| config)
                    }
                };
                let name = keys
                    .tls_name
                    .clone()
                    .unwrap_or_else(|| match &server.address.host {
                        Host::Domain(domain) => domain.clone(),
                        Host::Ip(ip) => ip.to_string(),
                    });
                let name = ServerName::try_from(name).map_err(|e| format!("tls name: {e}"))?;
                let (stream, _) =
                    Stream::connect_tls(tcp, config.rustls.clone(), name, config.handshake_timeout)
                        .await
                        .map_err(|e| format!("tls: {e}"))?;
                stream
            }
        };
        let message_id =
            (self.next_message_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff).max(1);
        let request = ldap::encode_simple_bind(message_id, &dn, password);
        let deadline = Instant::now() + keys.response_timeout.0;
        tokio::time::timeout_at(deadline, write_all(&stream, &request))
            .await
            .map_err(|_| "sending the bind timed out".to_string())?
            .map_err(|e| format!("send: {e}"))?;
        let mut buffer = Vec::with_capacity(keys.max_message_size.min(4096));
        let max = keys.max_message_size;
        let answer = conn::read_until(&stream, &mut buffer, max, deadline, |bytes| {
            ldap::parse_bind_response(bytes, max)
        })
        .await
        .map_err(|e| match e {
            conn::ReadError::Invalid(e) => e.to_string(),
            conn::ReadError::TooLarge => format!("answer larger than {max} bytes"),
            conn::ReadError::TimedOut => "no answer within response_timeout".to_string(),
            conn::ReadError::Closed { .. } => "closed before answering".to_string(),
            conn::ReadError::Io(e) => e.to_string(),
        })?;
        let _ = tokio::time::timeout_at(deadline, stream.shutdown_write()).await;
        if answer.message_id != message_id {
            return Err(format!(
                "answer to message {} for bind {message_id}",
                answer.message_id
            ));
        }
        match answer.result_code {
            ldap::SUCCESS => Ok(true),
            ldap::INVALID_CREDENTIALS => Ok(false),
            code => Err(format!("bind answered result code {code}")),
        }
    }
}

/// The users an LDAP group made for names it does not list, once the directory accepted
/// them: one object each, so their limits and blocks hold across logins. Bounded: past
/// the bound a name gets a user of its own each login (its limits then count per login).
#[derive(Default)]
pub struct Unmanaged {
    users: Mutex<HashMap<String, Arc<super::User>>>,
}

const UNMANAGED_MAX: usize = 65_536;

impl Unmanaged {
    pub fn get_or_make(
        &self,
        name: &str,
        make: impl FnOnce() -> Option<super::User>,
    ) -> Option<Arc<super::User>> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(user) = users.get(name) {
            return Some(user.clone());
        }
        let user = Arc::new(make()?);
        if users.len() < UNMANAGED_MAX {
            users.insert(name.to_string(), user.clone());
        }
        Some(user)
    }

    pub fn holds(&self, user: &Arc<super::User>) -> bool {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .get(&*user.name)
            .is_some_and(|held| Arc::ptr_eq(held, user))
    }
}
