//! `server NAME status`: `online`, `alive tasks`, `total conn`, `total task`, summed over the
//! workers of the serving generation.

use clap::Subcommand;
use g3proxy_shared::ipc::control::{CtlRequest, ServerStatus};

#[derive(Subcommand, Debug)]
pub enum ServerAction {
    Status,
}

pub fn request(name: &str, action: &ServerAction) -> CtlRequest {
    match action {
        ServerAction::Status => CtlRequest::ServerStatus {
            name: name.to_string(),
        },
    }
}

pub fn print(status: &ServerStatus) {
    println!("online: {}", status.online);
    println!("alive tasks: {}", status.alive_tasks);
    println!("total conn: {}", status.total_conn);
    println!("total task: {}", status.total_task);
}
