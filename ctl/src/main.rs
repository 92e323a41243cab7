//! `g3proxy-ctl`: one command to a g3proxy supervisor over its control socket, with
//! g3proxy-ctl's flags and output forms (`notice: success`, one name per line, `online: true`)
//! so runbooks keep working, and `--json` on every command for scripts.

mod client;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "g3proxy-ctl", version, about = "control a running g3proxy")]
struct Cli {
    /// Directory of the control sockets (default: /run/g3proxy if it exists, else /tmp/g3)
    #[arg(short = 'C', long = "control-dir", value_name = "DIR")]
    control_dir: Option<PathBuf>,
    /// Daemon group
    #[arg(short = 'G', long = "daemon-group", value_name = "NAME")]
    daemon_group: Option<String>,
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    #[arg(long = "completion", value_name = "SHELL", exclusive = true)]
    completion: Option<clap_complete::Shell>,
    /// Print the man page (roff), for packages
    #[arg(long = "manpage", hide = true, exclusive = true)]
    manpage: bool,
    /// Pid of the supervisor to talk to
    #[arg(short = 'p', long = "daemon-pid", value_name = "PID")]
    daemon_pid: Option<u32>,
    /// Print the answer as JSON
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<commands::Command>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completion {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "g3proxy-ctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if cli.manpage {
        let command = <Cli as clap::CommandFactory>::command().version(g3proxy_shared::VERSION);
        return match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let Some(command) = &cli.command else {
        eprintln!("g3proxy-ctl: a command is required (see --help)");
        return ExitCode::from(2);
    };
    if let commands::Command::PassphraseHash = command {
        return match commands::passphrase::run() {
            Ok(token) => {
                print!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("g3proxy-ctl: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.daemon_group.is_none() && cli.daemon_pid.is_none() {
        eprintln!("g3proxy-ctl: --daemon-group (-G) or --daemon-pid (-p) is required");
        return ExitCode::from(2);
    }
    let control_dir = cli
        .control_dir
        .clone()
        .unwrap_or_else(g3proxy_shared::ipc::trust::default_control_dir);
    let group = cli.daemon_group.clone().unwrap_or_default();
    let socket = match cli.daemon_pid {
        Some(pid) => control_dir.join(format!("{group}_{pid}.sock")),
        None => control_dir.join(format!(
            "{}.sock",
            if group.is_empty() { "_" } else { &group }
        )),
    };
    let request = match command.request() {
        Ok(request) => request,
        Err(error) => {
            eprintln!("g3proxy-ctl: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ask = || match client::ask(&socket, &request) {
        Ok(response) => commands::print(command, &response, cli.json),
        Err(error) => {
            eprintln!("rpc error ({error:#})");
            ExitCode::FAILURE
        }
    };
    match command {
        commands::Command::Fleet {
            watch: true,
            interval,
        } => watch(ask, *interval),
        _ => ask(),
    }
}

/// Shows the answer again every `interval` seconds (on a terminal, in place) until stopped
/// or the supervisor stops answering.
fn watch(ask: impl Fn() -> ExitCode, interval: f64) -> ExitCode {
    use std::io::{IsTerminal, Write};
    let interval = if interval.is_finite() { interval } else { 2.0 };
    let pause = std::time::Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
    let terminal = std::io::stdout().is_terminal();
    loop {
        if terminal {
            // Home, then clear: the view is redrawn where it was.
            print!("\x1b[H\x1b[2J");
        }
        let code = ask();
        let _ = std::io::stdout().flush();
        if code != ExitCode::SUCCESS {
            return code;
        }
        if !terminal {
            println!();
        }
        // The pause between two views is what the operator asked for, not a wait on a
        // condition.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(pause);
    }
}
