//! Config of `type: direct_float` (alias `direct_dynamic`): as `direct_fixed`, with the bind
//! addresses published at run time (`g3proxy-ctl escaper NAME publish '{"ipv4": …}'`) rather
//! than configured; and the published value's form, read by the supervisor (to refuse a bad
//! one before anything changes) and by the workers (to use it).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::EscaperKind;
use super::direct::DirectConfig;
use crate::config::de::Parts;
use crate::config::error::ConfigError;
use crate::types::Expire;

impl EscaperKind for DirectFloatConfig {
    fn resolver(&self) -> Option<&str> {
        Some(&self.direct.resolver)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirectFloatConfig {
    pub direct: DirectConfig,
    /// Where each publish's IPv4 / IPv6 value is kept, read back when the group starts after
    /// a reboot.
    pub cache_ipv4: Option<PathBuf>,
    pub cache_ipv6: Option<PathBuf>,
}

impl DirectFloatConfig {
    pub(super) fn decode(parts: &mut Parts) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Own {
            #[serde(default)]
            cache_ipv4: Option<PathBuf>,
            #[serde(default)]
            cache_ipv6: Option<PathBuf>,
        }
        let direct = parts.decode()?;
        let own: Own = parts.decode()?;
        Ok(DirectFloatConfig {
            direct,
            cache_ipv4: own.cache_ipv4,
            cache_ipv6: own.cache_ipv6,
        })
    }
}

/// One published bind address: `"192.0.2.1"`, or `{"ip": …, "id", "isp", "eip", "area",
/// "expire"}` (only `ip` and `expire` are used; the others describe the egress for g3's
/// path selection and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatBind {
    pub ip: IpAddr,
    pub id: Option<String>,
    pub expire: Option<Expire>,
}

impl FloatBind {
    pub fn is_usable(&self) -> bool {
        !self.expire.is_some_and(|e| e.is_past(0))
    }
}

/// A publish: `{"ipv4": <bind or list>, "ipv6": <bind or list>}`; a family left out or null
/// has no bind address (its targets cannot be reached).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloatBinds {
    pub v4: Vec<FloatBind>,
    pub v6: Vec<FloatBind>,
}

impl FloatBinds {
    pub fn parse(text: &str) -> Result<FloatBinds, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("a map with ipv4 and / or ipv6 is expected".into());
        };
        let mut binds = FloatBinds::default();
        for (key, value) in &map {
            let (family, v4) = match crate::config::normalize_key(key).as_str() {
                "ipv4" => (&mut binds.v4, true),
                "ipv6" => (&mut binds.v6, false),
                _ => return Err(format!("unknown key {key:?}: ipv4 or ipv6")),
            };
            let records = match value {
                Value::Null => continue,
                Value::Array(records) => records.iter().collect(),
                single => vec![single],
            };
            for (index, record) in records.into_iter().enumerate() {
                let bind = parse_bind(record).map_err(|e| format!("{key}[{index}]: {e}"))?;
                if bind.ip.is_ipv4() != v4 {
                    return Err(format!(
                        "{key}[{index}]: {} is not an {key} address",
                        bind.ip
                    ));
                }
                family.push(bind);
            }
        }
        Ok(binds)
    }

    /// The value of one family, as a cache file keeps it.
    pub fn family_json(text: &str, key: &str) -> Option<String> {
        let value: Value = serde_json::from_str(text).ok()?;
        value
            .as_object()?
            .iter()
            .find(|(k, _)| crate::config::normalize_key(k) == key)
            .map(|(_, v)| v.to_string())
    }
}

/// One bind: an address, or `{ip, id, isp, eip, area, expire}`.
pub fn parse_bind(value: &Value) -> Result<FloatBind, String> {
    let ip_of = |value: &Value| -> Result<IpAddr, String> {
        value
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("invalid IP address {value}"))
    };
    match value {
        Value::String(_) => Ok(FloatBind {
            ip: ip_of(value)?,
            id: None,
            expire: None,
        }),
        Value::Object(map) => {
            let mut bind = FloatBind {
                ip: ip_of(map.get("ip").ok_or("ip is missing")?)?,
                id: None,
                expire: None,
            };
            for (key, value) in map {
                match crate::config::normalize_key(key).as_str() {
                    "ip" | "isp" | "eip" | "area" => {}
                    "id" => bind.id = value.as_str().map(str::to_string),
                    "expire" => bind.expire = Some(parse_expire(value)?),
                    _ => return Err(format!("unknown key {key:?}")),
                }
            }
            Ok(bind)
        }
        other => Err(format!("a bind address is a string or a map, not {other}")),
    }
}

/// `expire` of a published record: an RFC 3339 time.
pub(super) fn parse_expire(value: &Value) -> Result<Expire, String> {
    value.as_str().and_then(Expire::parse).ok_or_else(|| {
        format!("invalid expire {value}: an RFC 3339 time such as 2030-01-01T00:00:00Z")
    })
}
