//! `type: route_select`: picks the next escaper among `next_nodes` by `next_pick_policy`; the
//! hashing policies key on the client, the user and the target host (g3's key), so one
//! client's tasks to one host keep their escaper.

use std::sync::Arc;

use g3proxy_shared::config::escapers::RouteSelectConfig;

use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::pick::Picker;

pub struct RouteSelectEscaper {
    nodes: Picker<Arc<Escaper>>,
}

impl RouteSelectEscaper {
    pub fn build(config: &RouteSelectConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let nodes = config
            .next_nodes
            .iter()
            .map(|node| (deps.escaper(&node.name), node.weight))
            .collect();
        Ok(RouteSelectEscaper {
            nodes: Picker::new(nodes, config.next_pick_policy),
        })
    }
}

impl EscaperOps for RouteSelectEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        Ok(Some(self.nodes.pick(&leg.hash_key())))
    }
}
