//! Every listening socket of the group, owned here for as long as a configured server uses it.
//! Workers get duplicates; the kernel's accept queue lives as long as our copy does, so a
//! generation switch never drops a queued connection.
//!
//! A socket is known by its [`ListenerKey`]: address, worker slot (for `listen_in_worker`) and
//! instance. Sockets come from `bind`, from systemd's `LISTEN_FDS`, from a predecessor's
//! handoff, or from orphaned workers; all four meet in [`ListenerSet`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::Context as _;
use g3proxy_shared::config::Config;
use g3proxy_shared::ipc::worker::ListenerEntry;
use g3proxy_shared::types::ListenSpec;
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, sockopt,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerKey {
    pub address: SocketAddr,
    pub slot: Option<usize>,
    pub instance: usize,
    /// IP_TRANSPARENT: a different socket from a plain one on the same address.
    pub transparent: bool,
}

impl ListenerKey {
    pub fn of(entry: &ListenerEntry) -> Self {
        ListenerKey {
            address: entry.address,
            slot: entry.slot,
            instance: entry.instance,
            transparent: entry.transparent,
        }
    }

    /// A name for systemd's fd store: printable, no `:` (LISTEN_FDNAMES is `:`-separated).
    pub fn fd_name(&self) -> String {
        let slot = self.slot.map_or("n".to_string(), |s| s.to_string());
        let hex: String = self
            .address
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let transparent = if self.transparent { "-t" } else { "" };
        format!("g3l-{hex}-{slot}-{}{transparent}", self.instance)
    }

    pub fn from_fd_name(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix("g3l-")?.split('-');
        let (hex, slot, instance) = (parts.next()?, parts.next()?, parts.next()?);
        let transparent = match parts.next() {
            None => false,
            Some("t") => true,
            Some(_) => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        let address = String::from_utf8(bytes?).ok()?.parse().ok()?;
        let slot = if slot == "n" {
            None
        } else {
            Some(slot.parse().ok()?)
        };
        Some(ListenerKey {
            address,
            slot,
            instance: instance.parse().ok()?,
            transparent,
        })
    }
}

/// What one worker of a config needs: its entries, each with the key of its socket.
pub fn plan_for_worker(config: &Config, worker_index: usize) -> Vec<ListenerEntry> {
    let mut entries = Vec::new();
    for server in &config.servers {
        let Some(spec) = server.listen() else {
            continue;
        };
        let slot = server.listen_in_worker().then_some(worker_index);
        for instance in 0..spec.instance {
            entries.push(ListenerEntry {
                server: server.name().to_string(),
                address: spec.address,
                slot,
                instance,
                transparent: spec.transparent,
            });
        }
    }
    entries
}

/// Every socket a config needs, with the spec to bind it from.
pub fn plan(config: &Config) -> BTreeMap<ListenerKey, ListenSpec> {
    let mut wanted = BTreeMap::new();
    for index in 0..config.worker_count() {
        for entry in plan_for_worker(config, index) {
            let spec = config.server(&entry.server).and_then(|s| s.listen());
            if let Some(spec) = spec {
                wanted.insert(ListenerKey::of(&entry), spec);
            }
        }
    }
    wanted
}

#[derive(Default)]
pub struct ListenerSet {
    sockets: BTreeMap<ListenerKey, TcpListener>,
}

impl ListenerSet {
    pub fn adopt(&mut self, key: ListenerKey, fd: OwnedFd) {
        self.sockets
            .entry(key)
            .or_insert_with(|| TcpListener::from(fd));
    }

    pub fn keys(&self) -> impl Iterator<Item = &ListenerKey> {
        self.sockets.keys()
    }

    pub fn duplicate(&self, key: &ListenerKey) -> Option<OwnedFd> {
        self.sockets
            .get(key)
            .and_then(|s| s.as_fd().try_clone_to_owned().ok())
    }

    /// Binds every socket of `wanted` not held yet; returns the keys it bound, so that a
    /// failed generation can give them back. On error, nothing stays bound.
    pub fn bind_missing(
        &mut self,
        wanted: &BTreeMap<ListenerKey, ListenSpec>,
    ) -> anyhow::Result<Vec<ListenerKey>> {
        let mut bound = Vec::new();
        for (key, spec) in wanted {
            if self.sockets.contains_key(key) {
                continue;
            }
            match bind(spec) {
                Ok(socket) => {
                    self.sockets.insert(key.clone(), socket);
                    bound.push(key.clone());
                }
                Err(error) => {
                    self.close(&bound);
                    return Err(error.context(format!("cannot listen on {}", key.address)));
                }
            }
        }
        Ok(bound)
    }

    /// Closes the given sockets; returns the keys that were open.
    pub fn close(&mut self, keys: &[ListenerKey]) -> Vec<ListenerKey> {
        keys.iter()
            .filter(|key| self.sockets.remove(key).is_some())
            .cloned()
            .collect()
    }

    /// Closes every socket none of `in_use` needs.
    pub fn retain(&mut self, in_use: &BTreeSet<ListenerKey>) -> Vec<ListenerKey> {
        let unused: Vec<ListenerKey> = self
            .sockets
            .keys()
            .filter(|k| !in_use.contains(k))
            .cloned()
            .collect();
        self.close(&unused)
    }
}

/// Binds one listening socket: SO_REUSEADDR and SO_REUSEPORT as g3proxy sets them (so
/// `listen_in_worker` sockets share a port), the spec's backlog and IPV6_V6ONLY.
pub fn bind(spec: &ListenSpec) -> anyhow::Result<TcpListener> {
    let family = if spec.address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd =
        socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true).context("SO_REUSEPORT")?;
    if spec.address.is_ipv6() {
        let only = spec.ipv6_only.unwrap_or(false);
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &only).context("IPV6_V6ONLY")?;
    }
    if spec.transparent {
        set_transparent(&fd, spec.address.is_ipv6())?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(spec.address)).context("bind")?;
    let backlog =
        Backlog::new(spec.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
    socket::listen(&fd, backlog).context("listen")?;
    Ok(TcpListener::from(fd))
}

/// IP_TRANSPARENT (IPV6_TRANSPARENT): the socket accepts connections to any address that
/// TPROXY rules send it, with the original destination as its local address. Needs
/// CAP_NET_ADMIN, which the supervisor has when it binds (it runs as root or with the
/// capability, as g3proxy's unit grants it).
fn set_transparent(fd: &OwnedFd, ipv6: bool) -> anyhow::Result<()> {
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    } else {
        (libc::SOL_IP, libc::IP_TRANSPARENT)
    };
    let on: libc::c_int = 1;
    // A plain int option on a socket we own.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error())
            .context("IP_TRANSPARENT (tcp_tproxy needs CAP_NET_ADMIN)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names_round_trip() {
        for key in [
            ListenerKey {
                address: "[::1]:8080".parse().unwrap(),
                slot: Some(3),
                instance: 0,
                transparent: false,
            },
            ListenerKey {
                address: "127.0.0.1:1".parse().unwrap(),
                slot: None,
                instance: 2,
                transparent: false,
            },
            ListenerKey {
                address: "127.0.0.1:1".parse().unwrap(),
                slot: Some(0),
                instance: 0,
                transparent: true,
            },
        ] {
            let name = key.fd_name();
            assert!(!name.contains(':') && name.len() < 255, "{name}");
            assert_eq!(ListenerKey::from_fd_name(&name), Some(key));
        }
        assert_eq!(ListenerKey::from_fd_name("stored"), None);
    }

    #[test]
    fn reuseport_sockets_share_a_port() {
        let first = bind(&ListenSpec::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let port = first.local_addr().unwrap().port();
        let second = bind(&ListenSpec::new(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap();
        assert_eq!(second.local_addr().unwrap().port(), port);
    }
}
