//! The `log` section: where each kind of structured log goes. A driver name for all of them
//! (`log: syslog`), or a map: `default` (the driver of every kind not named), `task`,
//! `escape`, `resolve`, `audit`, each a driver; `syslog` / `fluentd` as shorthands for the
//! default driver with that config. A driver is `discard`, `stdout`, `journal`, `syslog` or
//! `fluentd`, as a name (its defaults) or a one-key map with its config, beside the async
//! keys every logger takes (`async_channel_size`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::types::HumanDuration;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    pub default: LogDriver,
    pub task: Option<LogDriver>,
    pub escape: Option<LogDriver>,
    pub resolve: Option<LogDriver>,
    pub audit: Option<LogDriver>,
}

impl LogConfig {
    /// The driver of task logs.
    pub fn task(&self) -> &LogDriver {
        self.task.as_ref().unwrap_or(&self.default)
    }

    /// The driver of escape logs (escapers' failures).
    pub fn escape(&self) -> &LogDriver {
        self.escape.as_ref().unwrap_or(&self.default)
    }

    /// The driver of resolve logs (failed lookups).
    pub fn resolve(&self) -> &LogDriver {
        self.resolve.as_ref().unwrap_or(&self.default)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum LogDriver {
    #[default]
    Discard,
    Stdout,
    Journal(JournalConfig),
    Syslog(SyslogConfig),
    Fluentd(Box<FluentdConfig>),
}

/// fluentd's forward protocol over TCP, each event a message `[tag, time, record]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluentdConfig {
    #[serde(default = "default_fluentd_address")]
    pub address: SocketAddr,
    #[serde(default, deserialize_with = "crate::config::de::not_yet")]
    pub bind_ip: (),
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub connect_timeout: HumanDuration,
    /// How long to wait before connecting again after a failure; events meanwhile are lost.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub connect_delay: HumanDuration,
    #[serde(
        default = "default_write_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub write_timeout: HumanDuration,
    /// g3's batching and retry tuning; this build writes each event as it comes.
    #[serde(default)]
    pub flush_interval: Option<HumanDuration>,
    #[serde(default)]
    pub retry_queue_len: Option<usize>,
    #[serde(default)]
    pub tcp_keepalive: Option<crate::types::TcpKeepalive>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The forward protocol's authentication: the server's shared key, and a user name and
    /// password where the server asks for them.
    #[serde(default)]
    pub shared_key: Option<crate::types::Secret>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<crate::types::Secret>,
    /// TLS to the server, checked as `tls_name` (the address by default).
    #[serde(default)]
    pub tls_client: Option<crate::config::tls::TlsClientConfig>,
    #[serde(default)]
    pub tls_name: Option<String>,
}

fn default_fluentd_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 24224))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_write_timeout() -> HumanDuration {
    HumanDuration::secs(1)
}

/// journald's native protocol (datagrams to its socket).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Ours, not g3's: the socket to write to, for a journal that is not the system's.
    #[serde(default = "default_journal_socket")]
    pub socket_path: PathBuf,
}

fn default_journal_socket() -> PathBuf {
    PathBuf::from("/run/systemd/journal/socket")
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            socket_path: default_journal_socket(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyslogTarget {
    Unix(PathBuf),
    Udp(SocketAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub target: SyslogTarget,
    /// RFC 5424 framing with these ids; RFC 3164 when `None`.
    pub rfc5424: Option<Rfc5424>,
    pub emit_hostname: bool,
    pub append_report_ts: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc5424 {
    #[serde(default)]
    pub enterprise_id: u32,
    #[serde(default)]
    pub message_id: Option<String>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            target: SyslogTarget::Unix(PathBuf::from("/dev/log")),
            rfc5424: None,
            emit_hostname: false,
            append_report_ts: false,
        }
    }
}

impl<'de> Deserialize<'de> for SyslogConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Target {
            #[serde(default)]
            unix: Option<PathBuf>,
            #[serde(default)]
            udp: Option<SocketAddr>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Keys {
            #[serde(default)]
            target_unix: Option<PathBuf>,
            #[serde(default)]
            target_udp: Option<SocketAddr>,
            #[serde(default)]
            target: Option<Target>,
            #[serde(default)]
            format_rfc5424: Option<Rfc5424Form>,
            #[serde(default)]
            emit_hostname: bool,
            #[serde(default)]
            append_report_ts: bool,
            #[serde(
                default,
                rename = "use_cee_log_syntax",
                deserialize_with = "crate::config::de::not_yet"
            )]
            _use_cee_log_syntax: (),
            #[serde(
                default,
                rename = "cee_event_flag",
                deserialize_with = "crate::config::de::not_yet"
            )]
            _cee_event_flag: (),
        }
        let keys = Keys::deserialize(deserializer)?;
        let nested = keys.target.map(|t| (t.unix, t.udp)).unwrap_or_default();
        let target = match (keys.target_unix.or(nested.0), keys.target_udp.or(nested.1)) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "a syslog target is unix or udp, not both",
                ));
            }
            (Some(path), None) => SyslogTarget::Unix(path),
            (None, Some(address)) => SyslogTarget::Udp(address),
            (None, None) => SyslogConfig::default().target,
        };
        Ok(SyslogConfig {
            target,
            rfc5424: keys.format_rfc5424.and_then(|form| form.0),
            emit_hostname: keys.emit_hostname,
            append_report_ts: keys.append_report_ts,
        })
    }
}

/// `format_rfc5424`: `true`, or a map of its ids.
struct Rfc5424Form(Option<Rfc5424>);

impl<'de> Deserialize<'de> for Rfc5424Form {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match value {
            serde_json::Value::Bool(on) => Ok(Rfc5424Form(on.then(Rfc5424::default))),
            serde_json::Value::String(text) => match text.as_str() {
                "true" | "yes" | "on" => Ok(Rfc5424Form(Some(Rfc5424::default()))),
                _ => Ok(Rfc5424Form(None)),
            },
            map @ serde_json::Value::Object(_) => serde_json::from_value(map)
                .map(|ids| Rfc5424Form(Some(ids)))
                .map_err(de::Error::custom),
            _ => Err(de::Error::custom("format_rfc5424 is true or a map")),
        }
    }
}

impl<'de> Deserialize<'de> for LogDriver {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        driver_of(value).map_err(de::Error::custom)
    }
}

/// The async keys every logger takes: the queue is ours and bounded, its size fixed; they
/// are accepted.
const ASYNC_KEYS: [&str; 3] = [
    "async_channel_size",
    "async_thread_number",
    "io_error_sampling_offset",
];

fn driver_of(value: serde_json::Value) -> Result<LogDriver, String> {
    use serde_json::Value;
    let (name, config) = match value {
        Value::String(name) => (name, Value::Null),
        Value::Object(map) => {
            let mut drivers = map.into_iter().filter(|(key, _)| {
                !ASYNC_KEYS.contains(&crate::config::normalize_key(key).as_str())
            });
            let Some((name, config)) = drivers.next() else {
                return Err("a log driver map names its driver".into());
            };
            if let Some((other, _)) = drivers.next() {
                return Err(format!("one driver per logger: {name} and {other} given"));
            }
            (name, config)
        }
        other => return Err(format!("a log driver is a name or a map, not {other}")),
    };
    let config_or_default = |config: Value| match config {
        Value::Null => Value::Object(Default::default()),
        config => config,
    };
    match crate::config::normalize_key(&name).as_str() {
        "discard" => Ok(LogDriver::Discard),
        "stdout" => Ok(LogDriver::Stdout),
        "journal" => serde_json::from_value(config_or_default(config))
            .map(LogDriver::Journal)
            .map_err(|e| format!("journal: {e}")),
        "syslog" => serde_json::from_value(config_or_default(config))
            .map(LogDriver::Syslog)
            .map_err(|e| format!("syslog: {e}")),
        "fluentd" => serde_json::from_value(config_or_default(config))
            .map(|config| LogDriver::Fluentd(Box::new(config)))
            .map_err(|e| format!("fluentd: {e}")),
        other => Err(format!(
            "unknown log driver {other}: discard, stdout, journal, syslog or fluentd"
        )),
    }
}

impl<'de> Deserialize<'de> for LogConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        let value = Value::deserialize(deserializer)?;
        let Value::Object(map) = value else {
            return driver_of(value)
                .map(|default| LogConfig {
                    default,
                    ..Default::default()
                })
                .map_err(de::Error::custom);
        };
        let mut config = LogConfig::default();
        for (key, value) in map {
            let key = crate::config::normalize_key(&key);
            let driver = match key.as_str() {
                // `syslog: {...}` stands for `default: {syslog: {...}}`.
                "syslog" | "fluentd" | "journal" => {
                    let mut one = serde_json::Map::new();
                    one.insert(key.clone(), value);
                    driver_of(Value::Object(one))
                }
                _ => driver_of(value),
            }
            .map_err(|e| de::Error::custom(format!("{key}: {e}")))?;
            match key.as_str() {
                "default" | "syslog" | "fluentd" | "journal" => config.default = driver,
                "task" => config.task = Some(driver),
                "escape" => config.escape = Some(driver),
                "resolve" => config.resolve = Some(driver),
                "audit" => config.audit = Some(driver),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key {other}: default, task, escape, resolve, audit, syslog or fluentd"
                    )));
                }
            }
        }
        Ok(config)
    }
}
