//! Config of `type: dummy_deny` (alias `denyall`): an escaper that refuses every task, for a
//! route that must lead nowhere. It has no keys of its own (`extra_metrics_tags` is common).

use serde::Deserialize;

use super::EscaperKind;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DummyDenyConfig {}

impl EscaperKind for DummyDenyConfig {}
