//! User group configs (`user_group:`, alias `user:`). A group authenticates the users of the
//! servers that name it. `type: basic` (the default) is the only type this build runs; `facts`
//! and `ldap` are refused by name. One file per type, as for servers and escapers.

mod basic;
mod user;

pub use basic::{BasicUserGroupConfig, DynamicFormat, UserSource};
pub use user::{
    DstHostFilterSet, Expire, Redirect, RedirectTo, ResolveRedirection, UserConfig, stricter,
};

use super::de::decode;
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
}

impl UserGroupConfig {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn basic(&self) -> &BasicUserGroupConfig {
        match &self.group_type {
            UserGroupType::Basic(basic) => basic,
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
    match type_name {
        "basic" => {
            let basic: BasicUserGroupConfig = decode(node, path)?;
            basic
                .check()
                .map_err(|message| ConfigError::at(&node.file, path, node.line, message))?;
            Ok(UserGroupConfig {
                name: basic.name.clone(),
                group_type: UserGroupType::Basic(basic),
            })
        }
        "facts" | "ldap" => Err(type_error(
            type_node,
            path,
            format!("user group type {type_name} is not supported by this build yet"),
        )),
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
