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
    /// The same by name, for a user whose `egress_path_id_map` names one.
    by_name: std::collections::HashMap<String, Arc<Escaper>>,
}

impl RouteSelectEscaper {
    pub fn build(config: &RouteSelectConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let nodes = config
            .next_nodes
            .iter()
            .map(|node| (deps.escaper(&node.name), node.weight))
            .collect();
        let by_name = config
            .next_nodes
            .iter()
            .map(|node| (node.name.clone(), deps.escaper(&node.name)))
            .collect();
        Ok(RouteSelectEscaper {
            nodes: Picker::new(nodes, config.next_pick_policy),
            by_name,
        })
    }
}

impl EscaperOps for RouteSelectEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        // A path the user picked must be one of the nodes (g3 refuses the task otherwise).
        if let Some(id) = leg.path_id() {
            return match self.by_name.get(id) {
                Some(next) => Ok(Some(next)),
                None => Err(TaskError::UpstreamUnreachable(std::io::Error::other(
                    format!("no next escaper {id} for the user's egress path"),
                ))),
            };
        }
        Ok(Some(self.nodes.pick(&leg.hash_key())))
    }
}
