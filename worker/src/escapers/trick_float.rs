//! `type: trick_float`: each task goes through one of `next`, picked at random (g3 puts
//! float escapers there, to spread tasks over several published egresses).

use std::sync::Arc;

use g3proxy_shared::config::escapers::TrickFloatConfig;

use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::pick::random_index;

pub struct TrickFloatEscaper {
    next: Vec<Arc<Escaper>>,
}

impl TrickFloatEscaper {
    pub fn build(config: &TrickFloatConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        Ok(TrickFloatEscaper {
            next: config.next.iter().map(|name| deps.escaper(name)).collect(),
        })
    }
}

impl EscaperOps for TrickFloatEscaper {
    async fn next_for(&self, _leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        // The loader refuses an empty `next`.
        Ok(self.next.get(random_index(self.next.len())).map(|e| &**e))
    }
}
