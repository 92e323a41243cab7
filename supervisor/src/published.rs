//! What is published (users with `publish-user`, float escapers' binds and peers with
//! `escaper NAME publish`) outlives the supervisor that took it: every publish writes the
//! whole set of its kind to `<control_dir>/<group>.published-users.json` or
//! `.published-escapers.json` (mode 0600, replaced by a rename, so a reader never sees half a
//! file), and a supervisor starting for the group reads them back, whichever way it started
//! (a handoff, systemd's restart, after a crash). The control directory lives as long as the
//! machine runs; across a reboot, the modules' cache files (a user group's `cache`,
//! direct_float's `cache_ipv4` / `cache_ipv6`, proxy_float's `cache`, which every publish also
//! writes, as g3proxy does) bring them back.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use g3proxy_shared::config::escapers::{EscaperType, FloatBinds};
use g3proxy_shared::config::{Config, EscaperConfig};
use g3proxy_shared::ipc::worker::Published;
use tracing::warn;

/// What a record keeps: users per user group, or values per float escaper.
#[derive(Debug, Clone, Copy)]
pub enum Record {
    Users,
    Escapers,
}

fn state_path(control_dir: &Path, group: &str, record: Record) -> PathBuf {
    let kind = match record {
        Record::Users => "users",
        Record::Escapers => "escapers",
    };
    control_dir.join(format!("{group}.published-{kind}.json"))
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
    record: Record,
    published: &BTreeMap<String, Published>,
) -> std::io::Result<()> {
    let text = serde_json::to_string(published).map_err(std::io::Error::other)?;
    write_private(&state_path(control_dir, group, record), &text)
}

/// What was published to `group`'s modules of `record`'s kind before this supervisor: the
/// control directory's record, else each module's cache files.
pub fn load(
    control_dir: &Path,
    group: &str,
    record: Record,
    config: &Config,
) -> BTreeMap<String, Published> {
    let path = state_path(control_dir, group, record);
    let mut published: BTreeMap<String, Published> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|error| {
            warn!(
                "{}: unreadable, what was published is lost: {error}",
                path.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    };
    let cached: Vec<(&str, Option<String>)> = match record {
        Record::Users => config
            .user_groups
            .iter()
            .map(|g| (g.name(), g.basic().cache.as_deref().and_then(read_cache)))
            .collect(),
        Record::Escapers => config
            .escapers
            .iter()
            .map(|e| (e.name(), cached_escaper_value(e)))
            .collect(),
    };
    for (name, text) in cached {
        if let Some(text) = text
            && !published.contains_key(name)
        {
            // Older than any publish to come.
            published.insert(name.to_string(), Published { sequence: 1, text });
        }
    }
    published
}

fn read_cache(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|text| !text.trim().is_empty())
}

/// A float escaper's cache files as one publish: proxy_float's `cache` holds the peers;
/// direct_float's `cache_ipv4` and `cache_ipv6` hold one family's value each.
fn cached_escaper_value(escaper: &EscaperConfig) -> Option<String> {
    match &escaper.escaper_type {
        EscaperType::ProxyFloat(float) => float.cache.as_deref().and_then(read_cache),
        EscaperType::DirectFloat(float) => {
            let family = |path: &Option<PathBuf>| path.as_deref().and_then(read_cache);
            let (v4, v6) = (family(&float.cache_ipv4), family(&float.cache_ipv6));
            if v4.is_none() && v6.is_none() {
                return None;
            }
            let value = |text: Option<String>| {
                text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .unwrap_or(serde_json::Value::Null)
            };
            Some(serde_json::json!({"ipv4": value(v4), "ipv6": value(v6)}).to_string())
        }
        _ => None,
    }
}

/// Writes a float escaper's cache files for a publish of `text` (already checked).
pub fn write_escaper_cache(escaper: &EscaperConfig, text: &str) {
    let writes: Vec<(&Path, String)> = match &escaper.escaper_type {
        EscaperType::ProxyFloat(float) => float
            .cache
            .as_deref()
            .map(|path| (path, text.to_string()))
            .into_iter()
            .collect(),
        EscaperType::DirectFloat(float) => {
            [("ipv4", &float.cache_ipv4), ("ipv6", &float.cache_ipv6)]
                .into_iter()
                .filter_map(|(key, path)| {
                    let value = FloatBinds::family_json(text, key).unwrap_or_else(|| "null".into());
                    path.as_deref().map(|path| (path, value))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    for (path, value) in writes {
        if let Err(error) = write_private(path, &value) {
            warn!(
                "escaper {}: cannot write its cache {}: {error}",
                escaper.name(),
                path.display()
            );
        }
    }
}
