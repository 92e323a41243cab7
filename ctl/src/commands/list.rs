//! `list server|escaper|resolver|user-group|auditor|generations`.

use g3proxy_shared::config::normalize_key;
use g3proxy_shared::ipc::control::{CtlRequest, ModuleKind};

pub fn request(what: &str) -> CtlRequest {
    let kind = match normalize_key(what).as_str() {
        "server" => ModuleKind::Server,
        "escaper" => ModuleKind::Escaper,
        "resolver" => ModuleKind::Resolver,
        "user_group" | "user" => ModuleKind::UserGroup,
        "auditor" => ModuleKind::Auditor,
        "generation" | "generations" => return CtlRequest::Fleet,
        other => {
            eprintln!(
                "cli error (unknown list target {other:?}: use server, escaper, resolver, user-group, auditor or generations)"
            );
            std::process::exit(2);
        }
    };
    CtlRequest::List { kind }
}
