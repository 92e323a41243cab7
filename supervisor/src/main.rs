//! `g3proxy`: the long-lived supervisor of a daemon group. It parses the CLI and config, binds
//! and owns every listening socket, runs generations of `g3proxy-worker` processes over them,
//! serves the control sockets for `g3proxy-ctl`, and talks to systemd.
//!
//! Map: [`listeners`] (bind, own, close sockets), [`fleet`] (generations and worker
//! processes), [`supervisor`] (the event handler and all state changes), [`control`] (control
//! sockets), [`handoff`] (taking over from a predecessor), [`systemd`] (sd_notify, fd store).

mod control;
mod daemon;
mod depgraph;
mod event;
mod fleet;
mod handoff;
mod listeners;
mod metrics;
mod published;
mod supervisor;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use event::{CtlReply, Event, SignalAction};
use g3proxy_shared::ipc::control::CtlResponse;
use g3proxy_shared::ipc::trust;
use g3proxy_shared::logs;
use g3proxy_shared::user_limits::{self, UserLimits};
use listeners::{ListenerKey, ListenerSet};
use supervisor::{Options, Source, Supervisor};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "g3proxy",
    disable_version_flag = true,
    about = "forward proxy supervisor: owns the listeners, runs worker generations"
)]
struct Cli {
    /// Config file, or a directory holding main.yml
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Daemon group: names the control sockets
    #[arg(
        short = 'G',
        long = "group-name",
        value_name = "NAME",
        default_value = ""
    )]
    group_name: String,
    /// Directory of the control sockets (default: /run/g3proxy if it exists, else /tmp/g3)
    #[arg(short = 'C', long = "control-dir", value_name = "DIR")]
    control_dir: Option<PathBuf>,
    /// Run under systemd (process log to journald)
    #[arg(short = 's', long = "systemd")]
    systemd: bool,
    /// Run in the background once the config has loaded (needs --pid-file); the process log
    /// goes to syslog
    #[arg(short = 'd', long = "daemon", requires = "pid_file")]
    daemon: bool,
    /// The pid file of --daemon, locked while the daemon runs
    #[arg(short = 'p', long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Run under a monitor (our control socket and upgrade handshake are always on; with
    /// --panic-quit, a panic also sends SIGHUP to the parent)
    #[arg(short = 'm', long = "monitored")]
    monitored: bool,
    /// Quit on any panic: the supervisor on one of its own (not only in its main loop), a
    /// worker on one in any task (the supervisor restarts it)
    #[arg(long = "panic-quit")]
    panic_quit: bool,
    /// Load and check the config, then exit
    #[arg(short = 't', long = "test-config")]
    test_config: bool,
    /// Load the config, print its module graph (graphviz by default), then exit
    #[arg(
        short = 'g',
        long = "dep-graph",
        value_name = "FORMAT",
        num_args = 0..=1,
        default_missing_value = "graphviz"
    )]
    dep_graph: Option<depgraph::GraphFormat>,
    /// More process-log output: the supervisor writes info by default and debug with -v; workers
    /// warnings by default, info with -v, debug with -vv
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Print the version
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    #[arg(long = "completion", value_name = "SHELL")]
    completion: Option<clap_complete::Shell>,
    /// Print the man page (roff), for packages
    #[arg(long = "manpage", hide = true, exclusive = true)]
    manpage: bool,
    /// The worker binary (default: g3proxy-worker next to this binary)
    #[arg(long = "worker-binary", value_name = "FILE", hide = true)]
    worker_binary: Option<PathBuf>,
}

/// Set once the first generation serves; see [`install_panic_policy`].
static SERVING: AtomicBool = AtomicBool::new(false);

/// A panic before we serve (config, startup) exits 255, the unit's RestartPreventExitStatus,
/// so a deterministic crash is not restarted in a loop. Once serving, a panic in a task is
/// logged and the task dies; one in the main loop exits 101 and systemd's restart adopts the
/// workers, which keep serving meanwhile (the `kill -9` path). With `--panic-quit` every
/// panic exits 101, and with `-m` too the parent (a monitor) is sent SIGHUP first, as g3's.
fn install_panic_policy(panic_quit: bool, monitored: bool) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // What was logged before the panic belongs before its report.
        logs::flush();
        report(info);
        if !SERVING.load(Ordering::Relaxed) {
            std::process::exit(255);
        }
        if panic_quit && !g3proxy_shared::config::loading_on_this_thread() {
            // Not to init (or a container's pid 0, which would be our own process group).
            let parent = nix::unistd::getppid();
            if monitored && parent.as_raw() > 1 {
                let _ = nix::sys::signal::kill(parent, nix::sys::signal::Signal::SIGHUP);
            }
            std::process::exit(101);
        }
    }));
}

/// `-V`, and with `-v` what this build has, in g3proxy's lines: the features (only c-ares
/// here: no Lua, Python, hickory or QUIC) and the TLS provider (rustls on ring; no OpenSSL).
fn print_version(verbose: u8) {
    println!("g3proxy {}", g3proxy_shared::VERSION);
    if verbose > 0 {
        println!("Features: c-ares");
        println!("Rustls Provider: ring");
    }
    if verbose > 1 {
        println!(
            "Profile: {}, Target: {}-{}",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            std::env::consts::ARCH,
            std::env::consts::OS
        );
    }
}

/// Where the process log goes: syslog for a daemon (it has no stderr), journald under
/// systemd, else stderr.
fn process_log_sink(cli: &Cli) -> logs::ProcessLogSink {
    match (cli.daemon, cli.systemd) {
        (true, _) => logs::ProcessLogSink::Syslog,
        (false, true) => logs::ProcessLogSink::Journal,
        (false, false) => logs::ProcessLogSink::Stderr,
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    install_panic_policy(cli.panic_quit, cli.monitored);
    if cli.version {
        print_version(cli.verbose);
        return ExitCode::SUCCESS;
    }
    if let Some(shell) = cli.completion {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "g3proxy", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if cli.manpage {
        let command = <Cli as clap::CommandFactory>::command().version(g3proxy_shared::VERSION);
        return match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let Some(mut config_file) = cli.config_file.clone() else {
        eprintln!("g3proxy: -c/--config-file is required");
        return ExitCode::from(2);
    };
    if cli.test_config || cli.dep_graph.is_some() {
        return match g3proxy_shared::config::load(&config_file) {
            Ok((config, _)) => {
                for warning in &config.warnings {
                    eprintln!("warning: {warning}");
                }
                match cli.dep_graph {
                    Some(format) => print!("{}", depgraph::render(&config, format)),
                    None => println!("the format of the config file is ok"),
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    if let (true, Some(pid_file)) = (cli.daemon, &cli.pid_file) {
        // A config that does not load is said on the terminal, before we leave it.
        if let Err(error) = g3proxy_shared::config::load(&config_file) {
            eprintln!("{error}");
            return ExitCode::from(255);
        }
        // The daemon works from `/`: what the command line named relative to here is made
        // absolute first.
        let absolute = |path: &PathBuf| std::path::absolute(path).unwrap_or(path.clone());
        config_file = absolute(&config_file);
        cli.control_dir = cli.control_dir.as_ref().map(absolute);
        cli.worker_binary = cli.worker_binary.as_ref().map(absolute);
        if let Err(error) = daemon::daemonize(&absolute(pid_file)) {
            eprintln!("g3proxy: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    // Before any thread exists: this clears LISTEN_* from our environment.
    let from_systemd = systemd::take_listen_fds();
    logs::init(
        format!("g3proxy[{}]", std::process::id()),
        tracing::Level::INFO,
        cli.verbose,
        process_log_sink(&cli),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("g3proxy: cannot build the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli, config_file, from_systemd)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    };
    logs::flush();
    code
}

fn worker_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(path) = &cli.worker_binary {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("cannot find our own binary")?;
    Ok(exe.with_file_name("g3proxy-worker"))
}

async fn run(
    cli: Cli,
    config_file: PathBuf,
    from_systemd: Vec<(ListenerKey, std::os::fd::OwnedFd)>,
) -> anyhow::Result<u8> {
    let (config, bundle) = match g3proxy_shared::config::load(&config_file) {
        Ok(loaded) => loaded,
        Err(error) => {
            // 255 is the unit's RestartPreventExitStatus: a broken config is not retried in a loop.
            tracing::error!("{error}");
            return Ok(255);
        }
    };
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let control_dir = cli
        .control_dir
        .clone()
        .unwrap_or_else(trust::default_control_dir);
    trust::prepare_control_dir(&control_dir)?;
    let group = cli.group_name.clone();

    let mut listeners = ListenerSet::default();
    let mut predecessor = None;
    let mut adopted_workers = Vec::new();
    if !from_systemd.is_empty() {
        info!("systemd returned {} listeners", from_systemd.len());
        for (key, fd) in from_systemd {
            listeners.adopt(key, fd);
        }
        adopted_workers = handoff::worker_pids_in(&control_dir, &group);
    } else if let Some(found) = handoff::Predecessor::connect(&control_dir, &group)? {
        info!(
            "taking over {} listeners from the running supervisor; its {} workers drain once we serve",
            found.listeners.len(),
            found.worker_pids.len()
        );
        predecessor = Some(found);
    } else {
        let (orphaned, pids) = handoff::adopt_orphans(&control_dir, &group);
        for (key, fd) in orphaned {
            listeners.adopt(key, fd);
        }
        adopted_workers = pids;
    }
    if let Some(found) = predecessor.as_mut() {
        for (key, fd) in std::mem::take(&mut found.listeners) {
            listeners.adopt(key, fd);
        }
    }
    let held: Vec<ListenerKey> = listeners.keys().cloned().collect();
    systemd::store_listeners(&listeners, &held);

    let (events, mut inbox) = mpsc::unbounded_channel();
    let options = Options {
        group: group.clone(),
        control_dir: control_dir.clone(),
        config_path: config_file,
        worker_binary: worker_binary(&cli)?,
        verbosity: cli.verbose,
        process_log: process_log_sink(&cli),
        panic_quit: cli.panic_quit,
    };
    // Group-wide user counters: kept while any worker of the group lives (it counts in
    // them), made anew otherwise.
    let workers_alive = !handoff::worker_pids_in(&control_dir, &group).is_empty();
    let limits_path = user_limits::path(&control_dir, &group);
    let limits = match UserLimits::prepare(&limits_path, !workers_alive) {
        Ok(limits) => Some(limits),
        Err(error) => {
            warn!(
                "{}: {error}; users' request_alive_max and rate limits will not hold",
                limits_path.display()
            );
            None
        }
    };
    let mut supervisor = Supervisor::new(options, listeners, events.clone());
    supervisor.user_limits = limits;
    // Now, then every few seconds.
    supervisor.reclaim_user_limits();
    supervisor.fleet_metrics = config
        .stat
        .as_ref()
        .and_then(|stat| metrics::FleetMetrics::new(stat, &group));
    supervisor.emit_fleet_metrics();
    supervisor.adopted_workers = adopted_workers;
    supervisor.published_users =
        published::load(&control_dir, &group, published::Record::Users, &config);
    supervisor.published_escapers =
        published::load(&control_dir, &group, published::Record::Escapers, &config);
    supervisor.number_after(handoff::highest_generation(&control_dir, &group));

    let unique_path = control::unique_socket_path(&control_dir, &group, std::process::id());
    let group_path = control::group_socket_path(&control_dir, &group);
    let serve_control = |path: &std::path::Path| {
        control::serve(path, events.clone(), control_dir.clone(), group.clone())
    };
    let _unique = serve_control(&unique_path)?;
    let mut group_socket = None;
    if predecessor.is_none() {
        group_socket = Some(serve_control(&group_path)?);
    }
    forward_signals(events.clone())?;

    let (first_reply, first_answer) = oneshot::channel();
    supervisor
        .start_generation(Source::Loaded(Box::new(config), bundle), Some(first_reply))
        .await;
    let starter_events = events.clone();
    let (commit_done, commit_wait) = oneshot::channel::<bool>();
    tokio::spawn(async move {
        let result = match first_answer.await {
            Ok(CtlReply::Done(CtlResponse::Notice(_), _)) => Ok(()),
            Ok(CtlReply::Done(CtlResponse::Error(e), _)) => Err(e),
            _ => Err("the first generation did not start".to_string()),
        };
        if let Some(predecessor) = predecessor {
            let outcome = result.clone();
            let committed = tokio::task::spawn_blocking(move || match outcome {
                Ok(()) => predecessor.commit().is_ok(),
                Err(reason) => {
                    predecessor.abort(reason);
                    false
                }
            })
            .await
            .unwrap_or(false);
            let _ = commit_done.send(committed);
        }
        let _ = starter_events.send(Event::Started(result));
    });
    let mut commit_wait = Some(commit_wait);

    while let Some(event) = inbox.recv().await {
        let started_ok = matches!(event, Event::Started(Ok(())));
        if started_ok {
            SERVING.store(true, Ordering::Relaxed);
        }
        supervisor.handle(event).await;
        if started_ok {
            daemon::report_serving();
        }
        if started_ok && group_socket.is_none() {
            // The predecessor released the group socket when it committed; it is ours now.
            if let Some(wait) = commit_wait.take() {
                let _ = wait.await;
            }
            group_socket = Some(serve_control(&group_path)?);
        }
        if supervisor.finished() {
            break;
        }
    }
    supervisor.close_links().await;
    let _ = std::fs::remove_file(&unique_path);
    if let Some(task) = group_socket {
        task.abort();
        // After a handoff the path belongs to the successor's socket.
        if !supervisor.handed_over {
            let _ = std::fs::remove_file(&group_path);
        }
    }
    Ok(supervisor.exit_code.unwrap_or(0))
}

fn forward_signals(events: mpsc::UnboundedSender<Event>) -> anyhow::Result<()> {
    for (kind, action) in [
        (SignalKind::hangup(), SignalAction::Reload),
        (SignalKind::terminate(), SignalAction::Offline),
        (SignalKind::interrupt(), SignalAction::ForceQuit),
        (SignalKind::quit(), SignalAction::ForceQuit),
    ] {
        let mut stream = signal(kind).context("signal handler")?;
        let events = events.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if events.send(Event::Signal(action)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}
