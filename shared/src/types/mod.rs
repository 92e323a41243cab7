//! Value types shared by config and runtime: humanized durations and sizes, listen specs,
//! network ACLs.

mod humanize;
mod listen;
mod network_acl;

pub use humanize::{HumanDuration, HumanSize};
pub use listen::ListenSpec;
pub use network_acl::{AclAction, IpNetwork, NetworkAcl};
