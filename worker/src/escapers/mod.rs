//! Escapers: how a task reaches its upstream. One file per config `type`.

mod direct_fixed;

use std::collections::HashMap;
use std::sync::Arc;

use g3proxy_proto::HostPort;
use g3proxy_shared::config::EscaperConfig;
use tokio::net::TcpStream;

use crate::error::TaskError;
use crate::resolvers::Resolver;

pub enum Escaper {
    DirectFixed(direct_fixed::DirectFixedEscaper),
}

impl Escaper {
    pub fn build(
        config: &EscaperConfig,
        resolvers: &HashMap<String, Arc<Resolver>>,
    ) -> anyhow::Result<Escaper> {
        let resolver = |name: &str| {
            resolvers.get(name).cloned().ok_or_else(|| {
                anyhow::anyhow!("escaper {}: resolver {name} does not exist", config.name())
            })
        };
        Ok(match config {
            EscaperConfig::DirectFixed(c) => Escaper::DirectFixed(
                direct_fixed::DirectFixedEscaper::new(c.clone(), resolver(&c.resolver)?),
            ),
        })
    }

    /// Opens a TCP connection to `target`.
    pub async fn connect(&self, target: &HostPort) -> Result<TcpStream, TaskError> {
        match self {
            Escaper::DirectFixed(e) => e.connect(target).await,
        }
    }
}
