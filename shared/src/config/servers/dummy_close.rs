//! Config of `type: dummy_close`: a server that accepts and closes every connection. The
//! worker also stands one in for a server that another one names but the config lacks.

use serde::Deserialize;

use super::ServerKind;

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct DummyCloseConfig {}

impl ServerKind for DummyCloseConfig {}
