//! Config of `type: trick_float`: each task goes through one of `next` (an escaper name or a
//! list, float escapers in g3's use of it), picked at random.

use serde::Deserialize;

use super::EscaperKind;

impl EscaperKind for TrickFloatConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.next.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn check(&self) -> Result<(), String> {
        match self.next.is_empty() {
            true => Err("next is empty: name at least one escaper".into()),
            false => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrickFloatConfig {
    pub next: Vec<String>,
}
