//! Escaper configs. As for servers, every entry is decoded into [`EscaperCommon`] and into
//! its type's own struct over the same keys. A new escaper type is its file here and one line
//! in [`escaper_types!`], plus its runtime in `worker/src/escapers/`.

mod direct;
mod direct_fixed;
mod direct_float;
mod divert_tcp;
mod dummy_deny;
mod next_hop;
mod proxy_float;
mod proxy_http;
mod proxy_socks5;
mod route_client;
mod route_failover;
mod route_geoip;
mod route_query;
mod route_resolved;
mod route_select;
mod route_upstream;
mod rules;
mod trick_float;

pub use direct::{
    DirectConfig, HappyEyeballsConfig, PickStrategy, QueryStrategy, ResolveStrategy,
    TcpConnectConfig,
};
pub use direct_fixed::DirectFixedConfig;
pub use direct_float::{DirectFloatConfig, FloatBind, FloatBinds, parse_bind};
pub use divert_tcp::{DEFAULT_DIVERT_PORT, DivertTcpConfig};
pub use dummy_deny::DummyDenyConfig;
pub use next_hop::{NextHopConfig, PeerTlsConfig};
pub use proxy_float::{FloatPeer, FloatSource, PeerKind, ProxyFloatConfig, parse_peer};
pub use proxy_http::{
    DEFAULT_HTTP_PROXY_PORT, HttpForwardCapability, HttpPeerKeys, ProxyHttpConfig,
};
pub use proxy_socks5::{DEFAULT_SOCKS_PROXY_PORT, ProxySocks5Config, Socks5PeerKeys};
pub use route_client::RouteClientConfig;
pub use route_failover::RouteFailoverConfig;
pub use route_geoip::{GeoRules, IpLocateService, RouteGeoipConfig, country_alpha2};
pub use route_query::RouteQueryConfig;
pub use route_resolved::{RouteResolvedConfig, TargetResolution};
pub use route_select::{RouteSelectConfig, WeightedName};
pub use route_upstream::RouteUpstreamConfig;
pub use trick_float::TrickFloatConfig;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::de::Parts;
use super::error::ConfigError;
use super::type_error;
use super::yaml::Node;

/// The keys every escaper type has.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EscaperCommon {
    pub name: String,
    #[serde(default, deserialize_with = "crate::types::metric_tags")]
    pub extra_metrics_tags: BTreeMap<String, String>,
}

/// What the loader needs to know of any escaper type: the modules it refers to.
pub trait EscaperKind {
    fn resolver(&self) -> Option<&str> {
        None
    }
    /// Escapers this one passes tasks on to (route escapers).
    fn next_escapers(&self) -> Vec<&str> {
        Vec::new()
    }
    /// Rules between keys that decoding alone cannot see; the error names the entry.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// How a type's own keys are decoded: as a derived struct, or by its own function over the
/// entry's parts (types that share groups of keys).
macro_rules! decode_own {
    ($config:ty) => {
        Parts::decode::<$config>
    };
    ($config:ty, $via:path) => {
        $via
    };
}

macro_rules! escaper_types {
    ($($variant:ident($config:ty) = $name:literal $(| $alias:literal)* $(via $via:path)?;)*) => {
        #[derive(Debug, Clone, PartialEq)]
        pub enum EscaperType {
            $($variant($config),)*
        }

        impl EscaperType {
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(EscaperType::$variant(_) => $name,)*
                }
            }

            pub fn kind(&self) -> &dyn EscaperKind {
                match self {
                    $(EscaperType::$variant(config) => config,)*
                }
            }
        }

        fn decode_type(
            type_name: &str,
            node: &Node,
            path: &str,
        ) -> Option<Result<EscaperConfig, ConfigError>> {
            match type_name {
                $($name $(| $alias)* => Some((|| {
                    let mut parts = Parts::new(node, path);
                    let common = parts.decode::<EscaperCommon>()?;
                    let own: $config = decode_own!($config $(, $via)?)(&mut parts)?;
                    parts.finish()?;
                    Ok(EscaperConfig { common, escaper_type: EscaperType::$variant(own) })
                })()),)*
                _ => None,
            }
        }
    };
}

escaper_types! {
    DirectFixed(DirectFixedConfig) = "direct_fixed" | "directfixed" via DirectFixedConfig::decode;
    DirectFloat(DirectFloatConfig) = "direct_float" | "directfloat" | "direct_dynamic" | "directdynamic" via DirectFloatConfig::decode;
    ProxyFloat(ProxyFloatConfig) = "proxy_float" | "proxyfloat" | "proxy_dynamic" | "proxydynamic";
    ProxyHttp(ProxyHttpConfig) = "proxy_http" | "proxyhttp" via ProxyHttpConfig::decode;
    ProxyHttps(ProxyHttpConfig) = "proxy_https" | "proxyhttps" via ProxyHttpConfig::decode_tls;
    ProxySocks5(ProxySocks5Config) = "proxy_socks5" | "proxysocks5" via ProxySocks5Config::decode;
    ProxySocks5s(ProxySocks5Config) = "proxy_socks5s" | "proxysocks5s" via ProxySocks5Config::decode_tls;
    RouteUpstream(RouteUpstreamConfig) = "route_upstream" | "routeupstream";
    DummyDeny(DummyDenyConfig) = "dummy_deny" | "dummydeny" | "denyall";
    RouteFailover(RouteFailoverConfig) = "route_failover" | "routefailover" | "failover";
    RouteClient(RouteClientConfig) = "route_client" | "routeclient";
    RouteResolved(RouteResolvedConfig) = "route_resolved" | "routeresolved" via RouteResolvedConfig::decode;
    RouteSelect(RouteSelectConfig) = "route_select" | "routeselect";
    RouteQuery(RouteQueryConfig) = "route_query" | "routequery";
    RouteGeoip(RouteGeoipConfig) = "route_geoip" | "routegeoip" | "route_geo_ip" via RouteGeoipConfig::decode;
    DivertTcp(DivertTcpConfig) = "divert_tcp" | "diverttcp" via DivertTcpConfig::decode;
    TrickFloat(TrickFloatConfig) = "trick_float" | "trickfloat";
    RouteMapping(TrickFloatConfig) = "route_mapping" | "routemapping" via TrickFloatConfig::decode_mapping;
}

#[derive(Debug, Clone, PartialEq)]
pub struct EscaperConfig {
    pub common: EscaperCommon,
    pub escaper_type: EscaperType,
}

const NOT_YET: &[&str] = &["comply_audit", "route_dst_ip"];

pub(crate) fn decode(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<EscaperConfig, ConfigError> {
    if let Some(decoded) = decode_type(type_name, node, path) {
        let config = decoded?;
        config
            .escaper_type
            .kind()
            .check()
            .map_err(|message| ConfigError::at(&node.file, path, node.line, message))?;
        return Ok(config);
    }
    let message = if NOT_YET.contains(&type_name) {
        format!("escaper type {type_name} is not supported by this build yet")
    } else {
        format!("unknown escaper type {type_name}")
    };
    Err(type_error(type_node, path, message))
}

impl EscaperConfig {
    pub fn name(&self) -> &str {
        &self.common.name
    }

    pub fn type_name(&self) -> &'static str {
        self.escaper_type.type_name()
    }

    pub fn resolver(&self) -> Option<&str> {
        self.escaper_type.kind().resolver()
    }

    pub fn next_escapers(&self) -> Vec<&str> {
        self.escaper_type.kind().next_escapers()
    }

    /// Cache files written relative to the main config's directory, as g3proxy reads them.
    pub(crate) fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        let paths = match &mut self.escaper_type {
            EscaperType::DirectFloat(float) => vec![&mut float.cache_ipv4, &mut float.cache_ipv6],
            EscaperType::ProxyFloat(float) => vec![&mut float.cache],
            _ => Vec::new(),
        };
        for path in paths.into_iter().flatten() {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }
}
