//! Config of `type: trick_float`: each task goes through one of `next` (an escaper name or a
//! list, float escapers in g3's use of it), picked at random. `type: route_mapping` has the
//! same key: there a request's path number (`egress_path_selection_header`) picks the next
//! escaper by its place in the list, and only tasks without one are spread at random.

use serde::Deserialize;

use super::EscaperKind;
use crate::config::de::Parts;
use crate::config::error::ConfigError;

impl EscaperKind for TrickFloatConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.next.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn check(&self) -> Result<(), String> {
        if self.next.is_empty() {
            return Err("next is empty: name at least one escaper".into());
        }
        // A path number names a place in the list: a name twice would make it ambiguous.
        if self.by_path
            && let Some((_, name)) = self
                .next
                .iter()
                .enumerate()
                .find(|(i, name)| self.next[..*i].contains(name))
        {
            return Err(format!("next lists {name} twice"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrickFloatConfig {
    pub next: Vec<String>,
    /// `route_mapping`: a request's path number picks the next escaper.
    #[serde(skip)]
    pub by_path: bool,
}

impl TrickFloatConfig {
    /// `route_mapping`'s keys.
    pub(super) fn decode_mapping(parts: &mut Parts) -> Result<Self, ConfigError> {
        Ok(TrickFloatConfig {
            by_path: true,
            ..parts.decode()?
        })
    }
}
