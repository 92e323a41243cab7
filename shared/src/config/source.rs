//! Where config text comes from. The supervisor reads from disk and records every file and
//! directory listing it used into a [`ConfigBundle`]; workers load the very same bundle, so a
//! generation (and a worker restarted after a crash) always runs the config that was validated,
//! even if the files on disk changed since.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// A snapshot of the config files of one load. It travels to workers inside the IPC start
/// message, which is why it alone in `config` is serializable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigBundle {
    pub entry: PathBuf,
    pub files: BTreeMap<PathBuf, String>,
    pub dirs: BTreeMap<PathBuf, Vec<PathBuf>>,
}

pub(crate) trait Source {
    fn entry(&self) -> &Path;
    fn read(&mut self, path: &Path) -> Result<String, String>;
    fn is_dir(&mut self, path: &Path) -> bool;
    /// Files directly in `dir`, sorted, following symlinks.
    fn list(&mut self, dir: &Path) -> Result<Vec<PathBuf>, String>;
}

/// Picks the entry file: `path` itself, or in a directory the first of g3proxy's names.
pub fn find_entry(path: &Path) -> Result<PathBuf, ConfigError> {
    let shown = path.display().to_string();
    let path = std::fs::canonicalize(path)
        .map_err(|e| ConfigError::file(&shown, format!("cannot open config: {e}")))?;
    if !path.is_dir() {
        return Ok(path);
    }
    for stem in ["main", "g3proxy"] {
        for ext in ["yaml", "yml", "conf"] {
            let candidate = path.join(format!("{stem}.{ext}"));
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(ConfigError::file(
        &shown,
        "no main.yaml, main.yml, main.conf or g3proxy.{yaml,yml,conf} in this directory",
    ))
}

pub(crate) struct DiskSource {
    bundle: ConfigBundle,
}

impl DiskSource {
    pub fn new(entry: PathBuf) -> Self {
        DiskSource {
            bundle: ConfigBundle {
                entry,
                ..Default::default()
            },
        }
    }

    pub fn into_bundle(self) -> ConfigBundle {
        self.bundle
    }
}

impl Source for DiskSource {
    fn entry(&self) -> &Path {
        &self.bundle.entry
    }

    fn read(&mut self, path: &Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.bundle.files.insert(path.to_path_buf(), text.clone());
        Ok(text)
    }

    fn is_dir(&mut self, path: &Path) -> bool {
        path.is_dir()
    }

    fn list(&mut self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        self.bundle.dirs.insert(dir.to_path_buf(), files.clone());
        Ok(files)
    }
}

impl Source for &ConfigBundle {
    fn entry(&self) -> &Path {
        &self.entry
    }

    fn read(&mut self, path: &Path) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| format!("{} is not in the config snapshot", path.display()))
    }

    fn is_dir(&mut self, path: &Path) -> bool {
        self.dirs.contains_key(path)
    }

    fn list(&mut self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        self.dirs
            .get(dir)
            .cloned()
            .ok_or_else(|| format!("{} is not in the config snapshot", dir.display()))
    }
}
