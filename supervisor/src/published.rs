//! Users published with `publish-user` outlive the supervisor that took them: every publish
//! writes the whole set to `<control_dir>/<group>.published-users.json` (mode 0600, replaced
//! by a rename, so a reader never sees half a file), and a supervisor starting for the group
//! reads it back, whichever way it started (a handoff, systemd's restart, after a crash).
//! The control directory lives as long as the machine runs; across a reboot, a group's
//! `cache` file (which every publish also writes, as g3proxy does) brings them back.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use g3proxy_shared::config::Config;
use g3proxy_shared::ipc::worker::PublishedUsers;
use tracing::warn;

fn state_path(control_dir: &Path, group: &str) -> PathBuf {
    control_dir.join(format!("{group}.published-users.json"))
}

/// Writes `text` to `path` readable by us alone, through a temporary file and a rename. The
/// temporary name is new each time and must not exist (no symlink planted beside a `cache`
/// in a directory others can write makes us write through it).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.{nanos}.new", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

pub fn save(
    control_dir: &Path,
    group: &str,
    published: &BTreeMap<String, PublishedUsers>,
) -> std::io::Result<()> {
    let text = serde_json::to_string(published).map_err(std::io::Error::other)?;
    write_private(&state_path(control_dir, group), &text)
}

/// What was published to `group`'s user groups before this supervisor: the control
/// directory's record, else each user group's `cache` file.
pub fn load(control_dir: &Path, group: &str, config: &Config) -> BTreeMap<String, PublishedUsers> {
    let path = state_path(control_dir, group);
    let mut published: BTreeMap<String, PublishedUsers> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|error| {
            warn!(
                "{}: unreadable, published users lost: {error}",
                path.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    };
    for user_group in &config.user_groups {
        if published.contains_key(user_group.name()) {
            continue;
        }
        if let Some(cache) = &user_group.basic().cache
            && let Ok(text) = std::fs::read_to_string(cache)
            && !text.trim().is_empty()
        {
            // Older than any publish to come.
            let users = PublishedUsers {
                sequence: 1,
                users: text,
            };
            published.insert(user_group.name().to_string(), users);
        }
    }
    published
}
