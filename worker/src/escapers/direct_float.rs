//! `type: direct_float`: a direct escaper (`direct.rs`) whose connections leave from the
//! addresses last published to it (`escaper NAME publish '{"ipv4": …, "ipv6": …}'`), one of
//! the target's family picked at random per connection among those not expired. A family
//! without a published address cannot be reached: its addresses are skipped, and a target
//! with no other is unreachable.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use g3proxy_shared::config::escapers::{DirectFloatConfig, FloatBinds, parse_bind};
use g3proxy_shared::config::servers::ProxyProtocol;
use g3proxy_shared::ipc::worker::Published;

use super::direct::{Binds, Direct};
use super::{Connected, Dependencies, EscaperOps, Latest, Leg, LimitedSocket, PathChoice};
use crate::error::TaskError;
use crate::pick::random_index;

pub struct DirectFloatEscaper {
    direct: Direct,
    binds: RwLock<Latest<Arc<FloatBinds>>>,
}

impl DirectFloatEscaper {
    pub fn build(config: &DirectFloatConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(DirectFloatEscaper {
            direct: Direct::build(&config.direct, deps),
            binds: RwLock::new(Latest::default()),
        })
    }
}

impl Binds for DirectFloatEscaper {
    /// The user's id picks among the published binds, the user's value is the bind itself
    /// (g3's order); else one at random.
    fn bind_for(&self, target: IpAddr, path: &PathChoice<'_>) -> Result<Option<IpAddr>, TaskError> {
        let family_name = if target.is_ipv4() { "IPv4" } else { "IPv6" };
        let unreachable =
            |what: String| TaskError::UpstreamUnreachable(std::io::Error::other(what));
        if path.id.is_none()
            && let Some(value) = path.value
        {
            let bind = parse_bind(value)
                .map_err(|e| unreachable(format!("the user's egress path value: {e}")))?;
            if !bind.is_usable() {
                return Err(unreachable(
                    "the user's egress path bind has expired".into(),
                ));
            }
            if bind.ip.is_ipv4() != target.is_ipv4() {
                return Err(unreachable(format!(
                    "the user's egress path bind {} is not an {family_name} address",
                    bind.ip
                )));
            }
            return Ok(Some(bind.ip));
        }
        let binds = self
            .binds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .clone();
        let family = match target {
            IpAddr::V4(_) => &binds.v4,
            IpAddr::V6(_) => &binds.v6,
        };
        let usable: Vec<IpAddr> = family
            .iter()
            .filter(|bind| bind.is_usable())
            .filter(|bind| path.id.is_none_or(|id| bind.id.as_deref() == Some(id)))
            .map(|bind| bind.ip)
            .collect();
        match usable.is_empty() {
            true => Err(unreachable(format!(
                "no bind address published for {family_name}{}",
                path.id
                    .map(|id| format!(" with id {id}"))
                    .unwrap_or_default()
            ))),
            false => Ok(Some(usable[random_index(usable.len())])),
        }
    }
}

impl EscaperOps for DirectFloatEscaper {
    fn resolves_names(&self) -> bool {
        true
    }

    fn proxy_protocol(&self) -> Option<ProxyProtocol> {
        self.direct.proxy_protocol()
    }

    fn publish(&self, published: &Published) -> Result<(), String> {
        let binds = FloatBinds::parse(&published.text)?;
        let mut latest = self.binds.write().unwrap_or_else(|e| e.into_inner());
        latest.replace(published.sequence, Arc::new(binds));
        Ok(())
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
