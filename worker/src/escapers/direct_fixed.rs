//! `type: direct_fixed`: a direct escaper (`direct.rs`) whose connections leave from the
//! configured `bind_ip` addresses, one of the target's family picked at random per
//! connection, or from any address when none is of that family.

use std::net::{IpAddr, SocketAddr};

use g3proxy_shared::config::escapers::DirectFixedConfig;
use g3proxy_shared::config::servers::ProxyProtocol;

use super::direct::{Binds, Direct};
use super::{Connected, Dependencies, EscaperOps, Leg, LimitedSocket, PathChoice};
use crate::error::TaskError;
use crate::pick::random_index;

pub struct DirectFixedEscaper {
    direct: Direct,
    bind_ip: Vec<IpAddr>,
    enable_path_selection: bool,
}

impl DirectFixedEscaper {
    pub fn build(config: &DirectFixedConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(DirectFixedEscaper {
            direct: Direct::build(&config.direct, deps),
            bind_ip: config.bind_ip.clone(),
            enable_path_selection: config.enable_path_selection,
        })
    }
}

impl Binds for DirectFixedEscaper {
    fn bind_for(&self, target: IpAddr, path: &PathChoice<'_>) -> Result<Option<IpAddr>, TaskError> {
        let same_family: Vec<IpAddr> = self
            .bind_ip
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == target.is_ipv4())
            .collect();
        if same_family.is_empty() {
            return Ok(None);
        }
        let index = match self.enable_path_selection {
            true => path.index(same_family.len()),
            false => None,
        };
        Ok(Some(
            same_family[index.unwrap_or_else(|| random_index(same_family.len()))],
        ))
    }
}

impl EscaperOps for DirectFixedEscaper {
    fn resolves_names(&self) -> bool {
        true
    }

    fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        self.direct.proxy_protocol()
    }

    async fn tcp_connect(&self, leg: &Leg<'_>) -> Result<Connected, TaskError> {
        self.direct.tcp_connect(leg, self).await
    }

    async fn udp_target(&self, leg: &Leg<'_>) -> Result<SocketAddr, TaskError> {
        self.direct.udp_target(leg, self).await
    }

    fn udp_bind(&self, target: SocketAddr) -> Result<LimitedSocket, TaskError> {
        self.direct.udp_bind(target, self)
    }
}
