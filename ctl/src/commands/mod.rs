//! The ctl commands: each file turns its arguments into a request and its answer into
//! g3proxy-ctl's output.

mod escaper;
mod fleet;
mod list;
pub mod passphrase;
mod resolver;
mod server;
mod simple;
mod user_group;

use std::process::ExitCode;

use clap::Subcommand;
use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse, ModuleKind};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Version of the supervisor
    Version,
    /// Go offline: hand over to a successor, or stop gracefully
    Offline,
    /// Cancel an offline that is still waiting for a successor
    CancelShutdown,
    /// Close the tasks of a draining server now
    ForceQuit { server: String },
    /// Close the tasks of every draining generation now
    ForceQuitAll,
    /// List modules: server, escaper, resolver, user-group, auditor, or generations
    List { what: String },
    /// Server commands
    Server {
        name: String,
        #[command(subcommand)]
        action: server::ServerAction,
    },
    /// Escaper commands
    Escaper {
        name: String,
        #[command(subcommand)]
        action: escaper::EscaperAction,
    },
    /// Resolver commands
    Resolver {
        name: String,
        #[command(subcommand)]
        action: resolver::ResolverAction,
    },
    /// User group commands
    UserGroup {
        name: String,
        #[command(subcommand)]
        action: user_group::UserGroupAction,
    },
    /// Print a token for a user's config; the password is read from standard input
    PassphraseHash,
    /// Generations, workers, tasks and drain deadlines
    Fleet {
        /// Show it again every --interval seconds, with the drain's progress, until stopped
        #[arg(short = 'w', long)]
        watch: bool,
        /// Seconds between two views with --watch
        #[arg(long, value_name = "SECS", default_value_t = 2.0)]
        interval: f64,
    },
    /// Load the config again and switch to a new generation when it is ready
    Reload,
    /// Reload for the named server (the whole config is read again)
    ReloadServer { name: String },
    /// Reload for the named escaper (the whole config is read again)
    ReloadEscaper { name: String },
    /// Reload for the named resolver (the whole config is read again)
    ReloadResolver { name: String },
    /// Reload for the named user group (the whole config is read again)
    ReloadUserGroup { name: String },
    /// Reload for the named auditor (the whole config is read again)
    ReloadAuditor { name: String },
    /// Start a new generation from the worker binary on disk
    Upgrade,
}

impl Command {
    /// The request to send; an error for arguments that cannot make one (an unreadable
    /// file), or for a command that sends none.
    pub fn request(&self) -> Result<CtlRequest, String> {
        Ok(match self {
            Command::Version => CtlRequest::Version,
            Command::Offline => CtlRequest::Offline,
            Command::CancelShutdown => CtlRequest::CancelShutdown,
            Command::ForceQuit { server } => CtlRequest::ForceQuit {
                server: server.clone(),
            },
            Command::ForceQuitAll => CtlRequest::ForceQuitAll,
            Command::List { what } => list::request(what),
            Command::Server { name, action } => server::request(name, action),
            Command::Resolver { name, action } => resolver::request(name, action),
            Command::Escaper { name, action } => escaper::request(name, action)?,
            Command::Fleet { .. } => CtlRequest::Fleet,
            Command::Reload => CtlRequest::Reload,
            Command::ReloadServer { name } => reload_entry(ModuleKind::Server, name),
            Command::ReloadEscaper { name } => reload_entry(ModuleKind::Escaper, name),
            Command::ReloadResolver { name } => reload_entry(ModuleKind::Resolver, name),
            Command::ReloadUserGroup { name } => reload_entry(ModuleKind::UserGroup, name),
            Command::ReloadAuditor { name } => reload_entry(ModuleKind::Auditor, name),
            Command::Upgrade => CtlRequest::Upgrade,
            Command::UserGroup { name, action } => user_group::request(name, action)?,
            Command::PassphraseHash => return Err("passphrase-hash sends no request".into()),
        })
    }
}

fn reload_entry(kind: ModuleKind, name: &str) -> CtlRequest {
    CtlRequest::ReloadEntry {
        kind,
        name: name.to_string(),
    }
}

/// Prints an answer as g3proxy-ctl does; errors go to stderr with a failing exit code.
pub fn print(command: &Command, response: &CtlResponse, json: bool) -> ExitCode {
    if let CtlResponse::Error(reason) = response {
        if json {
            println!("{}", serde_json::json!({ "error": reason }));
        } else {
            eprintln!("api error (code: -1, reason: \"{reason}\")");
        }
        return ExitCode::FAILURE;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(response).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match (command, response) {
        (_, CtlResponse::Fleet(status)) => fleet::print(status),
        (_, CtlResponse::ServerStatus(status)) => server::print(status),
        _ => simple::print(response),
    }
    ExitCode::SUCCESS
}
