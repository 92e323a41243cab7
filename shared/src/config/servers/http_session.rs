//! The keys of a client's HTTP/1 session that `http_proxy` and `http_rproxy` share: how long
//! and how large a request head may be, the same for the upstream's response head, and how
//! long a kept-alive client may stay silent. Decoded as a part of its own from the same
//! entry ([`crate::config::de::Parts`]), so each type lists them once.

use serde::Deserialize;

use crate::types::{HumanDuration, HumanSize};

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
fn default_pipeline_size() -> usize {
    10
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpSessionConfig {
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
    /// g3's bound on requests read ahead of their responses. Requests are served one at a
    /// time here (pipelined ones wait in the read buffer), so every value holds; kept so
    /// that g3 configs load.
    #[serde(
        default = "default_pipeline_size",
        deserialize_with = "crate::types::bounds::pipeline_size"
    )]
    pub pipeline_size: usize,
}

impl Default for HttpSessionConfig {
    fn default() -> Self {
        HttpSessionConfig {
            req_header_recv_timeout: default_req_header_recv_timeout(),
            rsp_header_recv_timeout: default_rsp_header_recv_timeout(),
            req_header_max_size: default_header_max_size(),
            rsp_header_max_size: default_header_max_size(),
            pipeline_read_idle_timeout: default_pipeline_read_idle_timeout(),
            pipeline_size: default_pipeline_size(),
        }
    }
}
