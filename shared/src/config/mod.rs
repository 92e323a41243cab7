//! The config model and its loader, compatible with g3proxy's `main.yml`.
//!
//! Loading goes: entry file → marked YAML tree ([`yaml`]) → module lists expanded from inline
//! maps, files and directories → each entry decoded into its typed struct ([`de`]) → references
//! between modules checked. Every error names the file, the YAML path and the line.

mod de;
mod error;
pub mod escapers;
mod graph;
pub mod host_matched;
pub mod log;
pub mod resolvers;
mod runtime;
pub mod servers;
mod source;
pub mod stat;
pub mod tls;
pub mod user_groups;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ConfigError;
pub use escapers::EscaperConfig;
pub use resolvers::ResolverConfig;
pub use runtime::{RuntimeConfig, SchedAffinity, WorkerConfig};
pub use servers::ServerConfig;
pub use source::{ConfigBundle, find_entry};
pub use user_groups::UserGroupConfig;
pub use yaml::normalize_key;

use de::decode;
use source::{DiskSource, Source};
use yaml::{Node, Value, parse_documents};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub entry: PathBuf,
    pub runtime: RuntimeConfig,
    pub worker: Option<WorkerConfig>,
    /// Where StatsD metrics go; none without a `stat` section.
    pub stat: Option<stat::StatConfig>,
    /// Where structured logs go; discarded without a `log` section.
    pub log: log::LogConfig,
    pub resolvers: Vec<ResolverConfig>,
    pub escapers: Vec<EscaperConfig>,
    pub servers: Vec<ServerConfig>,
    pub user_groups: Vec<UserGroupConfig>,
    /// Names only: auditors are not run by this build, and a server that refers to one is
    /// refused rather than served without its checks.
    pub auditors: Vec<String>,
    /// References to modules that do not exist: loaded as g3proxy does (the worker stands in
    /// a module that refuses everything), and reported.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Worker processes in a generation: `worker.thread_number`, one per CPU by default, or a
    /// single worker when there is no `worker` section.
    pub fn worker_count(&self) -> usize {
        match &self.worker {
            None => 1,
            Some(worker) => worker.thread_number.unwrap_or_else(cpu_count).max(1),
        }
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name() == name)
    }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Loads the config at `path` (a file, or a directory holding `main.yml`) from disk, and the
/// snapshot of every file it read.
pub fn load(path: &Path) -> Result<(Config, ConfigBundle), ConfigError> {
    without_panics(&path.display().to_string(), || {
        let mut source = DiskSource::new(find_entry(path)?);
        let config = Loader::new(&mut source).load()?;
        Ok((config, source.into_bundle()))
    })
}

/// Loads a config from a snapshot taken by [`load`].
pub fn load_bundle(bundle: &ConfigBundle) -> Result<Config, ConfigError> {
    without_panics(&bundle.entry.display().to_string(), || {
        let mut source = bundle;
        Loader::new(&mut source).load()
    })
}

thread_local! {
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is loading a config, where a panic is caught and becomes a load
/// error: a panic hook that would end the process (`--panic-quit`) lets this one pass.
pub fn loading_on_this_thread() -> bool {
    LOADING.get()
}

/// A bug in the loader must cost a refused config, never the supervisor (a reload would
/// otherwise kill it and orphan its workers): a panic becomes an error on the entry file.
fn without_panics<T>(
    file: &str,
    load: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    LOADING.set(true);
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load));
    LOADING.set(false);
    loaded.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ConfigError::file(
            file,
            format!("internal error while loading the config (please report it): {what}"),
        ))
    })
}

pub(crate) fn type_error(type_node: &Node, path: &str, message: String) -> ConfigError {
    ConfigError::at(
        &type_node.file,
        &format!("{path}.type"),
        type_node.line,
        message,
    )
}

/// One module entry and where it was written.
struct Entry {
    node: Node,
    path: String,
}

struct Loader<'a, S: Source> {
    source: &'a mut S,
    base_dir: PathBuf,
    extension: Option<String>,
}

impl<'a, S: Source> Loader<'a, S> {
    fn new(source: &'a mut S) -> Self {
        let entry = source.entry().to_path_buf();
        let base_dir = entry.parent().map(Path::to_path_buf).unwrap_or_default();
        let extension = entry.extension().map(|e| e.to_string_lossy().into_owned());
        Loader {
            source,
            base_dir,
            extension,
        }
    }

    /// How a file is named in errors: relative to the main config's directory when inside it.
    fn shown_name(&self, path: &Path) -> Arc<str> {
        path.strip_prefix(&self.base_dir)
            .unwrap_or(path)
            .display()
            .to_string()
            .into()
    }

    fn read_documents(&mut self, path: &Path) -> Result<Vec<Node>, ConfigError> {
        let shown = self.shown_name(path);
        let text = self
            .source
            .read(path)
            .map_err(|e| ConfigError::file(&shown, e))?;
        parse_documents(&text, shown)
    }

    fn load(&mut self) -> Result<Config, ConfigError> {
        let entry = self.source.entry().to_path_buf();
        let mut runtime = None;
        let mut worker = None;
        let mut stat = None;
        let mut log = log::LogConfig::default();
        let mut sections: HashMap<&'static str, Vec<Entry>> = HashMap::new();
        for document in self.read_documents(&entry)? {
            let entries = match &document.value {
                Value::Map(entries) => entries,
                Value::Null => continue,
                _ => {
                    return Err(ConfigError::at(
                        &document.file,
                        "",
                        document.line,
                        "the main config must be a mapping",
                    ));
                }
            };
            for (key, value) in entries {
                let name = normalize_key(key.as_str().unwrap_or_default());
                let section = match name.as_str() {
                    "runtime" => {
                        runtime = Some(decode::<RuntimeConfig>(value, "runtime")?);
                        continue;
                    }
                    "worker" => {
                        worker = Some(decode::<WorkerConfig>(value, "worker")?);
                        continue;
                    }
                    "stat" => {
                        stat = Some(decode::<stat::StatConfig>(value, "stat")?);
                        continue;
                    }
                    "log" => {
                        // A fluentd logger's tls_client names PEM files too.
                        let mut node = value.clone();
                        tls::read_pem_files(&mut node, &self.base_dir, self.source);
                        log = decode::<log::LogConfig>(&node, "log")?;
                        continue;
                    }
                    // Accepted for compatibility: the control sockets are configured by flags.
                    "controller" => continue,
                    "resolver" => "resolver",
                    "escaper" => "escaper",
                    "server" => "server",
                    "user_group" | "user" => "user_group",
                    "auditor" => "auditor",
                    _ => {
                        return Err(ConfigError::at(
                            &key.file,
                            &name,
                            key.line,
                            format!("invalid key {name}"),
                        ));
                    }
                };
                let expanded = self.expand_module(section, value)?;
                sections.entry(section).or_default().extend(expanded);
            }
        }
        let mut take = |section| sections.remove(section).unwrap_or_default();
        let (mut resolver_entries, mut escaper_entries, mut server_entries) =
            (take("resolver"), take("escaper"), take("server"));
        let (user_group_entries, auditor_entries) = (take("user_group"), take("auditor"));

        // Certificates and keys are read now, through the source, so they are part of the
        // snapshot; decoding then finds them by path.
        let mut user_group_entries = user_group_entries;
        for entry in resolver_entries
            .iter_mut()
            .chain(escaper_entries.iter_mut())
            .chain(server_entries.iter_mut())
            .chain(user_group_entries.iter_mut())
        {
            tls::read_pem_files(&mut entry.node, &self.base_dir, self.source);
        }
        let decoded = (|| {
            Ok::<_, ConfigError>((
                decode_typed(&resolver_entries, resolvers::decode, None)?,
                decode_typed(&escaper_entries, escapers::decode, None)?,
                decode_typed(&server_entries, servers::decode, None)?,
            ))
        })();
        tls::forget_pem_files();
        let (resolvers, mut escapers, servers) = decoded?;
        for (escaper, _) in &mut escapers {
            escaper.resolve_paths(&self.base_dir);
        }
        // A group without `type` is a basic one, as in g3.
        let mut user_groups = decode_typed(
            &user_group_entries,
            user_groups::decode_group,
            Some("basic"),
        )?;
        for (group, _) in &mut user_groups {
            group.basic_mut().resolve_paths(&self.base_dir);
        }
        let auditors = entry_names(&auditor_entries)?;

        let mut config = Config {
            entry,
            runtime: runtime.unwrap_or_default(),
            worker,
            stat,
            log,
            resolvers: resolvers.iter().map(|(c, _)| c.clone()).collect(),
            escapers: escapers.iter().map(|(c, _)| c.clone()).collect(),
            servers: servers.iter().map(|(c, _)| c.clone()).collect(),
            user_groups: user_groups.iter().map(|(g, _)| g.clone()).collect(),
            auditors: auditors.iter().map(|(n, _)| n.clone()).collect(),
            warnings: Vec::new(),
        };
        check_unique("resolver", resolvers.iter().map(|(c, e)| (c.name(), *e)))?;
        check_unique("escaper", escapers.iter().map(|(c, e)| (c.name(), *e)))?;
        check_unique("server", servers.iter().map(|(c, e)| (c.name(), *e)))?;
        check_unique(
            "user_group",
            user_groups.iter().map(|(g, e)| (g.name(), *e)),
        )?;
        check_unique("auditor", auditors.iter().map(|(n, e)| (n.as_str(), *e)))?;
        let origins = graph::Origins {
            resolvers: resolvers.iter().map(|(c, o)| (c.name(), *o)).collect(),
            escapers: escapers.iter().map(|(c, o)| (c.name(), *o)).collect(),
            servers: servers.iter().map(|(c, o)| (c.name(), *o)).collect(),
        };
        config.warnings = graph::resolve(&mut config, &origins)?;
        Ok(config)
    }

    /// A module list may be one map, a path, or a list mixing maps and paths; a path names a
    /// file of YAML documents or a directory of files with the main config's extension.
    fn expand_module(&mut self, section: &str, value: &Node) -> Result<Vec<Entry>, ConfigError> {
        let items: Vec<(usize, &Node)> = match &value.value {
            Value::Seq(items) => items.iter().enumerate().collect(),
            Value::Null => Vec::new(),
            _ => vec![(0, value)],
        };
        let mut entries = Vec::new();
        for (index, item) in items {
            let path = format!("{section}[{index}]");
            match &item.value {
                Value::Map(_) => entries.push(Entry {
                    node: item.clone(),
                    path,
                }),
                Value::Scalar { text, .. } => {
                    entries.extend(self.include(section, text, item, &path)?)
                }
                Value::Null => {}
                Value::Seq(_) => {
                    return Err(ConfigError::at(
                        &item.file,
                        &path,
                        item.line,
                        "expected a mapping or a path",
                    ));
                }
            }
        }
        Ok(entries)
    }

    fn include(
        &mut self,
        section: &str,
        relative: &str,
        item: &Node,
        path: &str,
    ) -> Result<Vec<Entry>, ConfigError> {
        let target = self.base_dir.join(relative);
        let files = if self.source.is_dir(&target) {
            let listed = self
                .source
                .list(&target)
                .map_err(|e| ConfigError::at(&item.file, path, item.line, e))?;
            let wanted = self.extension.clone();
            listed
                .into_iter()
                .filter(|f| f.extension().map(|e| e.to_string_lossy().into_owned()) == wanted)
                .collect()
        } else {
            vec![target]
        };
        let mut entries = Vec::new();
        for file in files {
            for (index, document) in self.read_documents(&file)?.into_iter().enumerate() {
                match document.value {
                    Value::Map(_) => entries.push(Entry {
                        node: document,
                        path: format!("{section}[{index}]"),
                    }),
                    Value::Null => {}
                    _ => {
                        return Err(ConfigError::at(
                            &document.file,
                            section,
                            document.line,
                            format!("each document must be one {section} mapping"),
                        ));
                    }
                }
            }
        }
        Ok(entries)
    }
}

/// Where an entry was written, kept for errors found after decoding.
#[derive(Clone, Copy)]
struct Origin<'a> {
    node: &'a Node,
    path: &'a str,
}

impl Origin<'_> {
    fn error(&self, key: &str, message: String) -> ConfigError {
        let line = self.node.get(key).map_or(self.node.line, |n| n.line);
        ConfigError::at(
            &self.node.file,
            &format!("{}.{key}", self.path),
            line,
            message,
        )
    }
}

type TypedDecoder<T> = fn(&str, &Node, &Node, &str) -> Result<T, ConfigError>;

/// Reads `type` (`default_type` when the entry has none and the module allows it), then
/// decodes the rest of the entry as that type.
fn decode_typed<'e, T>(
    entries: &'e [Entry],
    decoder: TypedDecoder<T>,
    default_type: Option<&str>,
) -> Result<Vec<(T, Origin<'e>)>, ConfigError> {
    let mut decoded = Vec::new();
    for entry in entries {
        let Value::Map(fields) = &entry.node.value else {
            continue;
        };
        let implied;
        let type_node = match (entry.node.get("type"), default_type) {
            (Some(node), _) => node,
            (None, Some(name)) => {
                implied = Node {
                    value: Value::Scalar {
                        text: name.to_string(),
                        plain: true,
                    },
                    line: entry.node.line,
                    file: entry.node.file.clone(),
                };
                &implied
            }
            (None, None) => {
                return Err(ConfigError::at(
                    &entry.node.file,
                    &entry.path,
                    entry.node.line,
                    "missing field `type`",
                ));
            }
        };
        let type_name = type_node.as_str().map(normalize_key).ok_or_else(|| {
            ConfigError::at(
                &type_node.file,
                &format!("{}.type", entry.path),
                type_node.line,
                "type must be a name",
            )
        })?;
        let rest: Vec<(Node, Node)> = fields
            .iter()
            .filter(|(k, _)| k.as_str().map(normalize_key).as_deref() != Some("type"))
            .cloned()
            .collect();
        let node = Node {
            value: Value::Map(rest),
            line: entry.node.line,
            file: entry.node.file.clone(),
        };
        let config = decoder(&type_name, type_node, &node, &entry.path)?;
        decoded.push((
            config,
            Origin {
                node: &entry.node,
                path: &entry.path,
            },
        ));
    }
    Ok(decoded)
}

fn entry_names(entries: &[Entry]) -> Result<Vec<(String, Origin<'_>)>, ConfigError> {
    entries
        .iter()
        .map(
            |entry| match entry.node.get("name").and_then(Node::as_str) {
                Some(name) => Ok((
                    name.to_string(),
                    Origin {
                        node: &entry.node,
                        path: &entry.path,
                    },
                )),
                None => Err(ConfigError::at(
                    &entry.node.file,
                    &entry.path,
                    entry.node.line,
                    "missing field `name`",
                )),
            },
        )
        .collect()
}

fn check_unique<'a>(
    kind: &str,
    names: impl Iterator<Item = (&'a str, Origin<'a>)>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (name, origin) in names {
        if !seen.insert(name) {
            return Err(origin.error("name", format!("duplicate {kind} name {name:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
