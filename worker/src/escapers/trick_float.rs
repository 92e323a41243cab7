//! `type: trick_float`: each task goes through one of `next`, picked at random (g3 puts
//! float escapers there, to spread tasks over several published egresses). `type:
//! route_mapping` is the same but for a request that picks a path for it
//! (`egress_path_selection_header`): its number picks the place in `next`.

use std::sync::Arc;

use g3proxy_shared::config::escapers::TrickFloatConfig;

use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::pick::random_index;

pub struct TrickFloatEscaper {
    next: Vec<Arc<Escaper>>,
    by_path: bool,
}

impl TrickFloatEscaper {
    pub fn build(config: &TrickFloatConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(TrickFloatEscaper {
            next: config.next.iter().map(|name| deps.escaper(name)).collect(),
            by_path: config.by_path,
        })
    }
}

impl EscaperOps for TrickFloatEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        // The loader refuses an empty `next`.
        let index = leg
            .path_index(self.next.len())
            .filter(|_| self.by_path)
            .unwrap_or_else(|| random_index(self.next.len()));
        Ok(self.next.get(index).map(|e| &**e))
    }
}
