//! `user-group NAME list-static-user | list-dynamic-user | publish-user FILE`: the users of a
//! group, and new dynamic users for it. The file is checked here first (a JSON array of
//! users, as a `source` file holds them), so a mistake is named before anything is sent.

use clap::Subcommand;
use g3proxy_shared::config::user_groups::{DynamicFormat, parse_dynamic_users};
use g3proxy_shared::ipc::control::CtlRequest;

// The variants are the subcommands' names, which all end in "user" (g3proxy-ctl's).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Debug)]
pub enum UserGroupAction {
    /// Names of the group's static users
    ListStaticUser,
    /// Names of the group's dynamic users (from its source, or published)
    ListDynamicUser,
    /// Replace the group's dynamic users with those of a JSON file (an array of users)
    #[command(visible_aliases = ["publish", "publish-dynamic-user"])]
    PublishUser { file: std::path::PathBuf },
}

pub fn request(group: &str, action: &UserGroupAction) -> Result<CtlRequest, String> {
    let group = group.to_string();
    Ok(match action {
        UserGroupAction::ListStaticUser => CtlRequest::ListStaticUsers { group },
        UserGroupAction::ListDynamicUser => CtlRequest::ListDynamicUsers { group },
        UserGroupAction::PublishUser { file } => {
            let shown = file.display().to_string();
            let users =
                std::fs::read_to_string(file).map_err(|e| format!("{shown}: cannot read: {e}"))?;
            parse_dynamic_users(&users, DynamicFormat::Json, &shown).map_err(|e| e.to_string())?;
            CtlRequest::PublishUsers { group, users }
        }
    })
}
