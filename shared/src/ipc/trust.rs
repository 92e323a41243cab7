//! Who may sit at either end of a control or handoff socket, and which directory may hold
//! those sockets. A control socket hands out listening sockets and takes orders that stop the
//! proxy, so both ends check each other: the peer must be root or run as our own effective
//! uid (`SO_PEERCRED`), and the directory must belong to us and be writable by nobody else,
//! or another local user could put a socket of their own where we look for a predecessor.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The default `-C`: `/run/g3proxy` where it exists (the packaged unit's `RuntimeDirectory`),
/// else `/tmp/g3` as g3proxy has it. Supervisor and ctl pick it the same way.
pub fn default_control_dir() -> PathBuf {
    let run = Path::new("/run/g3proxy");
    if run.is_dir() {
        run.to_path_buf()
    } else {
        PathBuf::from("/tmp/g3")
    }
}

/// The credentials of the process at the other end of a Unix socket, as the kernel saw them
/// when it connected (or, for a listening peer, when it called `listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} pid {}", self.uid, self.pid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("refused control peer {peer}: only root or uid {ours} may use these sockets")]
    ForeignPeer { peer: Peer, ours: u32 },
    #[error("cannot read the control peer's credentials: {0}")]
    NoCredentials(io::Error),
    #[error("control directory {}: {problem}; {fix}", .dir.display())]
    UnsafeDirectory {
        dir: PathBuf,
        problem: String,
        fix: String,
    },
    #[error("control directory {}: {source}", .dir.display())]
    Directory { dir: PathBuf, source: io::Error },
}

fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Accepts the peer of `socket` if it is root or runs as our effective uid.
pub fn check_peer(socket: &impl AsFd) -> Result<Peer, TrustError> {
    let credentials = getsockopt(socket, PeerCredentials)
        .map_err(|e| TrustError::NoCredentials(io::Error::from(e)))?;
    let peer = Peer {
        uid: credentials.uid(),
        pid: credentials.pid(),
    };
    let ours = effective_uid();
    if peer.uid == 0 || peer.uid == ours {
        Ok(peer)
    } else {
        Err(TrustError::ForeignPeer { peer, ours })
    }
}

/// Creates the control directory 0700 if it is missing (the umask cannot widen that), then
/// checks it as [`check_control_dir`] does.
pub fn prepare_control_dir(dir: &Path) -> Result<(), TrustError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| TrustError::Directory {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(TrustError::Directory {
                dir: dir.to_path_buf(),
                source,
            });
        }
    }
    check_control_dir(dir)
}

/// Refuses a control directory (or a symlink to one) that another user owns or that group or
/// others may write: whoever can write there can plant a socket we would trust.
pub fn check_control_dir(dir: &Path) -> Result<(), TrustError> {
    let ours = effective_uid();
    let unsafe_dir = |problem: String, fix: String| TrustError::UnsafeDirectory {
        dir: dir.to_path_buf(),
        problem,
        fix,
    };
    let link = std::fs::symlink_metadata(dir).map_err(|source| TrustError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    if link.file_type().is_symlink() && link.uid() != 0 && link.uid() != ours {
        return Err(unsafe_dir(
            format!("is a symlink owned by uid {}", link.uid()),
            "remove it, or choose another directory with -C".into(),
        ));
    }
    let meta = std::fs::metadata(dir).map_err(|source| TrustError::Directory {
        dir: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "is not a directory".into(),
            "remove it, or choose another directory with -C".into(),
        ));
    }
    if meta.uid() != ours {
        return Err(unsafe_dir(
            format!("is owned by uid {}, not by us (uid {ours})", meta.uid()),
            format!(
                "remove it (someone may have planted it), or `chown {ours} {}` if it is ours",
                dir.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            format!("group or others may write it (mode {mode:04o})"),
            format!("`chmod 0700 {}`", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_even_under_a_wide_umask() {
        let base = std::env::temp_dir().join(format!("g3trust-{}", std::process::id()));
        let dir = base.join("control");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let prepared = prepare_control_dir(&dir);
        nix::sys::stat::umask(old);
        prepared.unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = check_control_dir(&dir).unwrap_err().to_string();
        assert!(
            refused.contains("mode 0777") && refused.contains("chmod 0700"),
            "{refused}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn our_own_peer_is_trusted() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = check_peer(&a).unwrap();
        assert_eq!(peer.pid as u32, std::process::id());
        drop(b);
    }
}
