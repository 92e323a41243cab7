//! Config of `type: socks_proxy`: a SOCKS5 proxy (TCP CONNECT).

use serde::Deserialize;

use super::http_proxy::{
    default_task_idle_check_interval, default_task_idle_max_count, default_tcp_copy_buffer_size,
};
use crate::types::{HumanDuration, HumanSize, ListenSpec, NetworkAcl};

fn default_negotiation_timeout() -> HumanDuration {
    HumanDuration::secs(4)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocksProxyConfig {
    pub name: String,
    pub escaper: String,
    #[serde(default, alias = "user")]
    pub user_group: Option<String>,
    #[serde(default)]
    pub auditor: Option<String>,
    #[serde(default)]
    pub listen: Option<ListenSpec>,
    #[serde(default)]
    pub listen_in_worker: bool,
    #[serde(default, alias = "ingress_net_filter")]
    pub ingress_network_filter: Option<NetworkAcl>,
    /// Time allowed from accept to a complete SOCKS request.
    #[serde(
        default = "default_negotiation_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub negotiation_timeout: HumanDuration,
    #[serde(
        default = "default_task_idle_check_interval",
        deserialize_with = "crate::types::bounds::timeout",
        alias = "task_idle_check_duration"
    )]
    pub task_idle_check_interval: HumanDuration,
    #[serde(
        default = "default_task_idle_max_count",
        deserialize_with = "crate::types::bounds::idle_count"
    )]
    pub task_idle_max_count: u32,
    #[serde(
        default = "default_tcp_copy_buffer_size",
        deserialize_with = "crate::types::bounds::buffer_size"
    )]
    pub tcp_copy_buffer_size: HumanSize,
}
