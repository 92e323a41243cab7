//! `type: basic`: users with passwords (HTTP Basic, SOCKS5 username/password): the
//! `static_users` of the config, dynamic users read from a `source` file every
//! `refresh_interval`, and an `anonymous_user` for clients that send no credentials or an
//! unknown name.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::user::UserConfig;
use crate::types::{HumanDuration, Token};

fn default_refresh_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

/// The keys of every group type. (No `deny_unknown_fields`: an LDAP group's own keys are
/// decoded from the same entry; a key no part takes is refused all the same.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BasicUserGroupConfig {
    pub name: String,
    #[serde(default)]
    pub static_users: Vec<UserConfig>,
    #[serde(default)]
    pub anonymous_user: Option<UserConfig>,
    #[serde(default)]
    pub source: Option<UserSource>,
    /// Where every `publish-user` is also written (g3's key), so published users come back
    /// after a reboot (see `supervisor/src/published.rs`).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: HumanDuration,
}

/// Where dynamic users come from: `{type: file, path, format}` or `file:///path?format=json`.
#[derive(Debug, Clone, PartialEq)]
pub enum UserSource {
    /// The path as written; relative paths are taken from the main config's directory by
    /// [`BasicUserGroupConfig::resolve_paths`].
    File {
        path: PathBuf,
        format: DynamicFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicFormat {
    Yaml,
    Json,
}

impl DynamicFormat {
    fn named(name: &str) -> Result<DynamicFormat, String> {
        match name.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Ok(DynamicFormat::Yaml),
            "json" => Ok(DynamicFormat::Json),
            other => Err(format!("unknown user file format {other:?}: yaml or json")),
        }
    }

    /// From the file's extension: json, else yaml (as g3 guesses).
    fn of(path: &std::path::Path) -> DynamicFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => DynamicFormat::Json,
            _ => DynamicFormat::Yaml,
        }
    }
}

impl<'de> Deserialize<'de> for UserSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;
        impl<'de> de::Visitor<'de> for SourceVisitor {
            type Value = UserSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a source map {type, path, format} or a file:// url")
            }
            fn visit_str<E: de::Error>(self, url: &str) -> Result<UserSource, E> {
                let (scheme, rest) = url
                    .split_once("://")
                    .ok_or_else(|| E::custom(format!("invalid source url {url:?}")))?;
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let format = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("format="))
                    .map(str::to_string);
                UserSource::new(scheme, Some(PathBuf::from(path)), format).map_err(E::custom)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<UserSource, A::Error> {
                let (mut source_type, mut path, mut format) = (None, None, None);
                let mut unknown = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" => source_type = Some(map.next_value::<String>()?),
                        "path" => path = Some(map.next_value::<PathBuf>()?),
                        "format" => format = Some(map.next_value::<String>()?),
                        // Refused below, once the type is known: a lua source's own keys
                        // should hear "lua is not supported", not "invalid key".
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            unknown.get_or_insert(key);
                        }
                    }
                }
                let source_type =
                    source_type.ok_or_else(|| de::Error::custom("a user source needs type"))?;
                let source =
                    UserSource::new(&source_type, path, format).map_err(de::Error::custom)?;
                match unknown {
                    Some(key) => Err(de::Error::custom(format!(
                        "invalid key {key} in a file source"
                    ))),
                    None => Ok(source),
                }
            }
        }
        deserializer.deserialize_any(SourceVisitor)
    }
}

impl UserSource {
    fn new(
        source_type: &str,
        path: Option<PathBuf>,
        format: Option<String>,
    ) -> Result<UserSource, String> {
        match source_type.to_ascii_lowercase().as_str() {
            "file" => {}
            "lua" | "python" => {
                return Err(format!(
                    "user source type {source_type} is not supported by this build (no {source_type} interpreter); use a file source"
                ));
            }
            other => return Err(format!("unknown user source type {other}")),
        }
        let path = path
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or("a file source needs path")?;
        let format = match format {
            Some(name) => DynamicFormat::named(&name)?,
            None => DynamicFormat::of(&path),
        };
        Ok(UserSource::File { path, format })
    }
}

impl BasicUserGroupConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for user in &self.static_users {
            if !names.insert(user.name.as_str()) {
                return Err(format!("duplicate static user {:?}", user.name));
            }
        }
        Ok(())
    }

    /// The anonymous user, whose password is never checked (it has none).
    pub fn anonymous(&self) -> Option<UserConfig> {
        self.anonymous_user.clone().map(|mut user| {
            user.token = Token::Unchecked;
            user
        })
    }

    /// Makes relative paths relative to the main config's directory.
    pub(crate) fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        if let Some(UserSource::File { path, .. }) = &mut self.source
            && path.is_relative()
        {
            *path = base_dir.join(&*path);
        }
        if let Some(cache) = &mut self.cache
            && cache.is_relative()
        {
            *cache = base_dir.join(&*cache);
        }
    }
}
