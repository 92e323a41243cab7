//! Config of `type: http_proxy`: an HTTP/1.x forward proxy (absolute-URI requests and CONNECT).

use serde::Deserialize;

use crate::types::{HumanDuration, HumanSize, ListenSpec, NetworkAcl};

fn default_req_header_recv_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_rsp_header_recv_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_header_max_size() -> HumanSize {
    HumanSize(64 * 1024)
}
fn default_pipeline_read_idle_timeout() -> HumanDuration {
    HumanDuration::secs(300)
}
pub(crate) fn default_task_idle_check_interval() -> HumanDuration {
    HumanDuration::secs(60)
}
pub(crate) fn default_task_idle_max_count() -> u32 {
    5
}
pub(crate) fn default_tcp_copy_buffer_size() -> HumanSize {
    HumanSize(16 * 1024)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProxyConfig {
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
    #[serde(
        default = "default_req_header_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub req_header_recv_timeout: HumanDuration,
    #[serde(
        default = "default_rsp_header_recv_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub rsp_header_recv_timeout: HumanDuration,
    #[serde(
        default = "default_header_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub req_header_max_size: HumanSize,
    #[serde(
        default = "default_header_max_size",
        deserialize_with = "crate::types::bounds::header_size"
    )]
    pub rsp_header_max_size: HumanSize,
    /// How long a keep-alive client connection may wait for its next request.
    #[serde(
        default = "default_pipeline_read_idle_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub pipeline_read_idle_timeout: HumanDuration,
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
