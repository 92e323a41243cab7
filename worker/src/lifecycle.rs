//! A worker's life: build the generation's objects from the config snapshot, start accepting
//! on the handed-over sockets, report READY, then react to one closed set of events (a
//! supervisor message, a control request, a task ending, a deadline) until it is time to exit.
//!
//! Orphaned (the supervisor vanished): keep accepting. If the supervisor said it was leaving
//! on purpose, drain once `server_offline_delay` passes with no successor; if it died, wait for
//! a successor to adopt us through [`crate::control`].

use std::collections::HashMap;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use g3proxy_shared::config::escapers::QueryStrategy;
use g3proxy_shared::config::load_bundle;
use g3proxy_shared::ipc::worker::{
    FromWorker, ListenerEntry, ServerStats, ToWorker, WorkerStart, WorkerState, WorkerStatus,
    worker_socket_path,
};
use g3proxy_shared::ipc::{self, read_frame};
use g3proxy_shared::types::unix_secs;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::auth::{GroupLimits, UserGroup};
use crate::context::{Context, Phase, TaskRegistry};
use crate::control::{self, ControlRequest};
use crate::escapers::{Dependencies, Escaper};
use crate::metrics::Metrics;
use crate::resolvers::Resolver;
use crate::servers::{self, BuildContext, Server};
use tracing::{info, warn};

struct Worker {
    start: WorkerStart,
    /// `runtime.task_wait_timeout`: how long draining may take when we decide to drain.
    drain_timeout: Duration,
    phase: watch::Sender<Phase>,
    context: Arc<Context>,
    servers: Vec<Arc<Server>>,
    resolvers: HashMap<String, Arc<Resolver>>,
    escapers: HashMap<String, Arc<Escaper>>,
    user_groups: HashMap<String, Arc<UserGroup>>,
    metrics: Option<Arc<std::sync::Mutex<Metrics>>>,
    /// Our copies of the listeners, kept to share with a successor; dropped when draining.
    listeners: Vec<(ListenerEntry, StdTcpListener)>,
    drain_deadline: Option<SystemTime>,
    orphaned: bool,
    /// Set when the supervisor left on purpose: how long to wait for a successor.
    offline_delay: Option<Duration>,
    orphan_deadline: Option<Instant>,
    force_quit_at: Option<Instant>,
}

/// Builds everything the config asks for and starts the accept loops.
fn build(start: WorkerStart, fds: Vec<OwnedFd>) -> anyhow::Result<Worker> {
    let config = load_bundle(&start.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if fds.len() != start.listeners.len() {
        anyhow::bail!(
            "{} listeners announced but {} descriptors received",
            start.listeners.len(),
            fds.len()
        );
    }
    // The structured loggers of the `log` section (none for `discard`).
    let logger = |driver, kind: &'static str| {
        crate::log::Logger::start(driver, kind, &start.group)
            .map_err(|e| anyhow::anyhow!("{} log: {e}", kind.to_ascii_lowercase()))
    };
    let task_log = logger(config.log.task(), "Task")?;
    let escape_log = logger(config.log.escape(), "Escape")?;
    let resolve_log = logger(config.log.resolve(), "Resolve")?;
    let loggers: Vec<Arc<crate::log::Logger>> = [&task_log, &escape_log, &resolve_log]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mut resolvers = HashMap::new();
    for resolver in &config.resolvers {
        let built = Resolver::build(resolver, &resolvers, resolve_log.clone())
            .map_err(|e| anyhow::anyhow!("resolver {}: {e}", resolver.name()))?;
        resolvers.insert(resolver.name().to_string(), Arc::new(built));
    }
    let mut escapers = HashMap::new();
    for escaper in &config.escapers {
        escapers.insert(
            escaper.name().to_string(),
            Arc::new(Escaper::build(
                escaper,
                &Dependencies {
                    resolvers: &resolvers,
                    escapers: &escapers,
                    escape_log: escape_log.as_ref(),
                },
            )?),
        );
    }
    // What was published to float escapers before this worker.
    for (name, published) in &start.published_escapers {
        if let Some(escaper) = escapers.get(name)
            && let Err(error) = escaper.publish(published)
        {
            warn!("escaper {name}: its last publish is not used: {error}");
        }
    }
    // The group-wide user counters, mapped once for every user group of this worker.
    let limits = match config.user_groups.is_empty() {
        true => None,
        false => GroupLimits::open(&start.control_dir, &start.group),
    };
    let mut user_groups = HashMap::new();
    for group in &config.user_groups {
        let published = start.published_users.get(group.name());
        let built = Arc::new(UserGroup::build(group, limits.as_ref(), published));
        built.spawn_refresh();
        user_groups.insert(group.name().to_string(), built);
    }
    let (phase, phase_receiver) = watch::channel(Phase::Serving);
    let mut context = Context::new(phase_receiver, Arc::new(TaskRegistry::default()));
    context.task_log = task_log;
    let context = Arc::new(context);
    // The config lists servers after those they hand connections to.
    let mut servers = HashMap::new();
    for server in &config.servers {
        let built = Server::build(
            server,
            &BuildContext {
                context: &context,
                escapers: &escapers,
                user_groups: &user_groups,
                servers: &servers,
            },
        )?;
        servers.insert(server.name().to_string(), built);
    }
    let mut listeners = Vec::new();
    for (entry, fd) in start.listeners.iter().zip(fds) {
        let server = servers
            .get(&entry.server)
            .ok_or_else(|| anyhow::anyhow!("listener for unknown server {}", entry.server))?;
        let listener = StdTcpListener::from(fd);
        listener.set_nonblocking(true)?;
        let kept = listener.try_clone()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(servers::accept_loop(
            listener,
            server.clone(),
            context.clone(),
        ));
        listeners.push((entry.clone(), kept));
    }
    let servers: Vec<Arc<Server>> = servers.into_values().collect();
    let metrics = config.stat.as_ref().and_then(|stat| {
        let escapers: Vec<Arc<Escaper>> = escapers.values().cloned().collect();
        let resolvers: Vec<Arc<Resolver>> = resolvers.values().cloned().collect();
        let measured = crate::metrics::Measured {
            servers: &servers,
            escapers: &escapers,
            resolvers: &resolvers,
            loggers: &loggers,
        };
        Metrics::start(&config, stat, &start.group, measured, &context)
    });
    Ok(Worker {
        start,
        phase,
        context,
        servers,
        resolvers,
        escapers,
        user_groups,
        metrics,
        listeners,
        drain_timeout: config.runtime.drain_timeout(),
        drain_deadline: None,
        orphaned: false,
        offline_delay: None,
        orphan_deadline: None,
        force_quit_at: None,
    })
}

async fn send(link: &mut Option<OwnedWriteHalf>, message: &FromWorker) {
    let Some(writer) = link else { return };
    match ipc::encode(message) {
        Ok(frame) => {
            if writer.write_all(&frame).await.is_err() {
                *link = None;
            }
        }
        Err(e) => warn!("cannot encode {message:?}: {e}"),
    }
}

pub async fn run(
    start: WorkerStart,
    fds: Vec<OwnedFd>,
    link: StdUnixStream,
    mut link_buffer: Vec<u8>,
) -> ExitCode {
    let link = match link
        .set_nonblocking(true)
        .and_then(|_| tokio::net::UnixStream::from_std(link))
    {
        Ok(link) => link,
        Err(e) => {
            warn!("cannot use the supervisor link: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut link_reader, link_writer) = link.into_split();
    let mut link_writer = Some(link_writer);
    let mut worker = match build(start, fds) {
        Ok(worker) => worker,
        Err(error) => {
            warn!("cannot start: {error:#}");
            send(
                &mut link_writer,
                &FromWorker::StartFailed {
                    error: format!("{error:#}"),
                },
            )
            .await;
            return ExitCode::FAILURE;
        }
    };
    let (requests, mut control_requests) = mpsc::channel::<ControlRequest>(16);
    let socket_path = worker_socket_path(
        &worker.start.control_dir,
        &worker.start.group,
        std::process::id(),
    );
    if let Err(e) = control::serve(&socket_path, requests) {
        warn!(
            "no control socket at {}: {e}; a successor supervisor cannot adopt this worker",
            socket_path.display()
        );
    }
    send(
        &mut link_writer,
        &FromWorker::Ready {
            pid: std::process::id(),
            version: g3proxy_shared::VERSION.to_string(),
        },
    )
    .await;
    info!("ready with {} listeners", worker.listeners.len());

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let far = Instant::now() + Duration::from_secs(10 * 365 * 86400);
    let exit = loop {
        if worker.finished() {
            break ExitCode::SUCCESS;
        }
        let deadline = [
            worker.orphan_deadline,
            worker.drain_deadline.map(instant_of),
            worker.force_quit_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far);
        tokio::select! {
            frame = read_frame(&mut link_reader, &mut link_buffer), if !worker.orphaned => match frame {
                Ok(Some(payload)) => match ipc::decode::<ToWorker>(&payload) {
                    Ok(message) => {
                        let (reply, _) = worker.handle(message);
                        if let Some(reply) = reply {
                            send(&mut link_writer, &reply).await;
                        }
                    }
                    Err(e) => warn!("ignoring a supervisor message: {e}"),
                },
                Ok(None) | Err(_) => worker.orphan(),
            },
            Some(request) = control_requests.recv() => match request.message {
                ToWorker::QueryResolver { id, name, domain, strategy, resolution_delay_ms } => {
                    // Answered from a task of its own: a lookup may take seconds.
                    let resolver = worker.resolvers.get(&name).cloned();
                    tokio::spawn(async move {
                        let delay = Duration::from_millis(resolution_delay_ms);
                        let answer = match resolver {
                            None => None,
                            Some(resolver) => Some(operator_lookup(&resolver, &domain, strategy, delay).await),
                        };
                        let _ = request.reply.send((Some(FromWorker::Resolved { id, answer }), Vec::new()));
                    });
                }
                message => {
                    let answer = worker.handle(message);
                    let _ = request.reply.send(answer);
                }
            },
            _ = worker.context.tasks.changed() => {}
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => worker.on_deadline(),
        }
    };
    let _ = std::fs::remove_file(&socket_path);
    // The last changes, and gauges at what is left.
    if let Some(metrics) = &worker.metrics {
        metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .emit(false);
    }
    info!("exiting");
    exit
}

/// `resolver NAME query`: the addresses as text, or why there are none; cut short of the
/// supervisor's wait for our answer.
async fn operator_lookup(
    resolver: &Arc<Resolver>,
    domain: &str,
    strategy: QueryStrategy,
    resolution_delay: Duration,
) -> Result<Vec<String>, String> {
    let lookup = resolver.happy_eyeballs(domain, strategy, resolution_delay);
    match tokio::time::timeout(OPERATOR_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(ips)) => Ok(ips.iter().map(ToString::to_string).collect()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {}s",
            OPERATOR_LOOKUP_TIMEOUT.as_secs()
        )),
    }
}

const OPERATOR_LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);

fn instant_of(at: SystemTime) -> Instant {
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

impl Worker {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn finished(&self) -> bool {
        let alive = self.context.tasks.alive();
        match self.phase() {
            Phase::Serving => false,
            Phase::Draining => alive == 0,
            Phase::ForceQuit => {
                alive == 0 || self.force_quit_at.is_some_and(|at| Instant::now() >= at)
            }
        }
    }

    fn orphan(&mut self) {
        self.orphaned = true;
        match self.offline_delay {
            Some(delay) => {
                info!("supervisor left; accepting for {delay:?} more unless a successor adopts us");
                self.orphan_deadline = Some(Instant::now() + delay);
            }
            None if self.phase() == Phase::Serving => {
                warn!("supervisor is gone; still accepting until a successor adopts this worker");
            }
            None => {}
        }
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        if self.orphan_deadline.is_some_and(|at| now >= at) {
            info!("no successor came; draining");
            let deadline = SystemTime::now() + self.drain_timeout;
            self.drain(self.drain_deadline.unwrap_or(deadline));
        }
        if self
            .drain_deadline
            .is_some_and(|at| SystemTime::now() >= at)
            && self.phase() == Phase::Draining
        {
            warn!(
                "drain deadline passed with {} tasks alive; closing them",
                self.context.tasks.alive()
            );
            self.force_quit();
        }
    }

    fn drain(&mut self, deadline: SystemTime) {
        self.orphan_deadline = None;
        self.drain_deadline = Some(deadline);
        if self.phase() == Phase::Serving {
            self.context.set_phase(&self.phase, Phase::Draining);
            // Our copies go too: a listener no generation serves any more must really close.
            self.listeners.clear();
            info!("draining {} tasks", self.context.tasks.alive());
        }
    }

    fn force_quit(&mut self) {
        self.orphan_deadline = None;
        self.listeners.clear();
        // Tunnels and idle keep-alive clients look at the phase when polled: they are woken.
        self.context.set_phase(&self.phase, Phase::ForceQuit);
        // Tasks see the phase at once; give them a moment to close their sockets cleanly.
        self.force_quit_at
            .get_or_insert(Instant::now() + Duration::from_secs(2));
    }

    fn status(&self) -> WorkerStatus {
        let state = match self.phase() {
            Phase::Serving if self.orphaned => WorkerState::Orphaned,
            Phase::Serving => WorkerState::Serving,
            Phase::Draining | Phase::ForceQuit => WorkerState::Draining,
        };
        let online = self.phase() == Phase::Serving;
        WorkerStatus {
            pid: std::process::id(),
            generation: self.start.generation,
            worker_index: self.start.worker_index,
            version: g3proxy_shared::VERSION.to_string(),
            state,
            alive_tasks: self.context.tasks.alive(),
            tasks_by_kind: self.context.tasks.by_kind(),
            oldest_task_age_secs: self.context.tasks.oldest_age().map(|age| age.as_secs()),
            drain_deadline_unix_secs: self.drain_deadline.map(unix_secs),
            servers: self
                .servers
                .iter()
                .map(|server| {
                    let counters = &server.counters;
                    ServerStats {
                        name: counters.name.clone(),
                        online,
                        alive_tasks: counters.alive.load(Ordering::Relaxed),
                        total_conn: counters.total_conn.load(Ordering::Relaxed),
                        total_task: counters.total_task.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }

    /// Handles one message from the supervisor or the control socket; returns the answer and
    /// the descriptors that go with it.
    fn handle(&mut self, message: ToWorker) -> (Option<FromWorker>, Vec<OwnedFd>) {
        match message {
            ToWorker::Start(_) => warn!("ignoring a second start message"),
            ToWorker::Drain { deadline_unix_secs } => {
                self.drain(UNIX_EPOCH + Duration::from_secs(deadline_unix_secs));
                return (
                    Some(FromWorker::Status {
                        id: 0,
                        status: self.status(),
                    }),
                    Vec::new(),
                );
            }
            ToWorker::ForceQuit => {
                self.force_quit();
                return (
                    Some(FromWorker::Status {
                        id: 0,
                        status: self.status(),
                    }),
                    Vec::new(),
                );
            }
            ToWorker::Status { id } => {
                return (
                    Some(FromWorker::Status {
                        id,
                        status: self.status(),
                    }),
                    Vec::new(),
                );
            }
            ToWorker::PublishEscaper { escaper, published } => {
                match self.escapers.get(&escaper) {
                    Some(found) => {
                        if let Err(error) = found.publish(&published) {
                            warn!("escaper {escaper}: publish not used: {error}");
                        }
                    }
                    None => warn!("a publish to escaper {escaper}, which this worker lacks"),
                }
                return (Some(FromWorker::Applied { id: 0 }), Vec::new());
            }
            ToWorker::PublishUsers { group, published } => {
                match self.user_groups.get(&group) {
                    Some(found) => found.publish(&published),
                    None => warn!("users published to user group {group}, which this worker lacks"),
                }
                return (Some(FromWorker::Applied { id: 0 }), Vec::new());
            }
            // Answered in the main loop, which has the control socket's reply at hand.
            ToWorker::QueryResolver { .. } => warn!("ignoring a resolver query on the link"),
            ToWorker::ListDynamicUsers { id, group } => {
                let names = self.user_groups.get(&group).map(|g| g.dynamic_user_names());
                return (Some(FromWorker::UserNames { id, names }), Vec::new());
            }
            ToWorker::SupervisorLeaving {
                offline_delay_millis,
            } => self.offline_delay = Some(Duration::from_millis(offline_delay_millis)),
            ToWorker::ShareListeners { id } => {
                // A successor is adopting us and will tell us to drain once it serves; should
                // it fail, a supervisor that left on purpose still gets a full window.
                if self.orphan_deadline.is_some() {
                    self.orphan_deadline = self.offline_delay.map(|delay| Instant::now() + delay);
                }
                let mut entries = Vec::new();
                let mut fds = Vec::new();
                for (entry, listener) in &self.listeners {
                    if let Ok(fd) = listener.as_fd().try_clone_to_owned() {
                        entries.push(entry.clone());
                        fds.push(fd);
                    }
                }
                let answer = FromWorker::Listeners {
                    id,
                    entries,
                    worker_count: self.start.worker_count,
                };
                return (Some(answer), fds);
            }
        }
        (None, Vec::new())
    }
}
