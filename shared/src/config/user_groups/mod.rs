//! User group configs (`user_group:`, alias `user:`). A group authenticates the users of the
//! servers that name it: `type: basic` (the default) by password, `type: facts` by what a
//! connection is (its client or server address, its server name: the `auth_by_*` of stream
//! servers). Both have the same keys (a facts user has `match_by_facts` where a basic one has
//! a `token`); `type: ldap` by a directory's bind (`ldap.rs`).

mod basic;
mod ldap;
mod site;
mod user;

pub use basic::{BasicUserGroupConfig, DynamicFormat, UserSource};
pub use ldap::{LdapKeys, LdapServer};
pub use site::{DurationStats, ExplicitSite, ExplicitSites};
pub use user::{
    DstHostFilterSet, Expire, Fact, Redirect, RedirectTo, ResolveRedirection, UserConfig, stricter,
};

use super::de::{Parts, decode};
use super::error::ConfigError;
use super::type_error;
use super::yaml::{Node, Value, parse_documents};

#[derive(Debug, Clone, PartialEq)]
pub struct UserGroupConfig {
    pub name: String,
    pub group_type: UserGroupType,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserGroupType {
    Basic(BasicUserGroupConfig),
    Facts(BasicUserGroupConfig),
    Ldap(BasicUserGroupConfig, Box<LdapKeys>),
}

impl UserGroupConfig {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The keys every group type has.
    pub fn basic(&self) -> &BasicUserGroupConfig {
        match &self.group_type {
            UserGroupType::Basic(basic)
            | UserGroupType::Facts(basic)
            | UserGroupType::Ldap(basic, _) => basic,
        }
    }

    /// An LDAP group's own keys.
    pub fn ldap(&self) -> Option<&LdapKeys> {
        match &self.group_type {
            UserGroupType::Ldap(_, keys) => Some(keys),
            _ => None,
        }
    }

    pub(crate) fn basic_mut(&mut self) -> &mut BasicUserGroupConfig {
        match &mut self.group_type {
            UserGroupType::Basic(basic)
            | UserGroupType::Facts(basic)
            | UserGroupType::Ldap(basic, _) => basic,
        }
    }

    pub fn is_facts(&self) -> bool {
        matches!(self.group_type, UserGroupType::Facts(_))
    }

    pub fn type_name(&self) -> &'static str {
        match self.group_type {
            UserGroupType::Basic(_) => "basic",
            UserGroupType::Facts(_) => "facts",
            UserGroupType::Ldap(..) => "ldap",
        }
    }
}

/// Decodes a group; `type_name` is `basic` when the entry has no `type` (as in g3).
pub(crate) fn decode_group(
    type_name: &str,
    type_node: &Node,
    node: &Node,
    path: &str,
) -> Result<UserGroupConfig, ConfigError> {
    let refuse = |message: String| ConfigError::at(&node.file, path, node.line, message);
    match type_name {
        "basic" | "facts" | "ldap" => {
            let mut parts = Parts::new(node, path);
            let basic: BasicUserGroupConfig = parts.decode()?;
            basic.check().map_err(refuse)?;
            let ldap = match type_name {
                "ldap" => {
                    let keys: LdapKeys = parts.decode()?;
                    keys.check().map_err(refuse)?;
                    Some(Box::new(keys))
                }
                _ => None,
            };
            parts.finish()?;
            let name = basic.name.clone();
            let group_type = match (type_name, ldap) {
                (_, Some(keys)) => UserGroupType::Ldap(basic, keys),
                ("facts", None) => UserGroupType::Facts(basic),
                _ => UserGroupType::Basic(basic),
            };
            Ok(UserGroupConfig { name, group_type })
        }
        other => Err(type_error(
            type_node,
            path,
            format!("unknown user group type {other}"),
        )),
    }
}

/// Reads the users of a dynamic user file (a `source` file, or what `publish-user` sent):
/// YAML documents each holding one user or a list of users, or a JSON array of users. A later
/// user of the same name replaces an earlier one, as in g3. `shown` names the file in errors.
pub fn parse_dynamic_users(
    text: &str,
    format: DynamicFormat,
    shown: &str,
) -> Result<Vec<UserConfig>, ConfigError> {
    match format {
        DynamicFormat::Json => serde_json::from_str::<Vec<UserConfig>>(text)
            .map_err(|e| ConfigError::at(shown, "", e.line(), format!("invalid user list: {e}"))),
        DynamicFormat::Yaml => {
            let mut users = Vec::new();
            for (index, document) in parse_documents(text, shown.into())?.into_iter().enumerate() {
                let path = format!("[{index}]");
                match &document.value {
                    Value::Null => {}
                    Value::Seq(_) => users.extend(decode::<Vec<UserConfig>>(&document, &path)?),
                    _ => users.push(decode::<UserConfig>(&document, &path)?),
                }
            }
            Ok(users)
        }
    }
}
