//! The supervisor's state and its one event handler: starting, switching, rolling back and
//! draining generations, restarting crashed workers, answering control requests, and going
//! offline for a successor.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use g3proxy_shared::config::{self, Config, ConfigBundle, cpu_count};
use g3proxy_shared::ipc::control::CtlResponse;
use g3proxy_shared::ipc::worker::{
    FromWorker, ListenerEntry, RuntimeTuning, ToWorker, WorkerStart,
};
use g3proxy_shared::logs::ProcessLogSink;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::event::{CtlReply, Event, SignalAction, WorkerId};
use crate::fleet::worker::PinnedBinary;
use crate::fleet::{Generation, GenerationState, Slot, restart_backoff, worker};
use crate::listeners::{self, ListenerKey, ListenerSet};
use crate::systemd;
use g3proxy_shared::types::unix_secs;
use tracing::{info, warn};

mod requests;

pub struct Options {
    pub group: String,
    pub control_dir: PathBuf,
    pub config_path: PathBuf,
    pub worker_binary: PathBuf,
    pub verbosity: u8,
    /// Where process logs (ours and the workers') go: syslog with `-d`, journald with `-s`.
    pub process_log: ProcessLogSink,
    /// `--panic-quit`, passed to workers.
    pub panic_quit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Serving,
    /// `offline` outside systemd: still serving, waiting for a successor to take over.
    OfflineWaiting {
        epoch: u64,
    },
    /// A successor holds copies of our listeners and is starting its generation.
    HandingOff,
    /// Our generations drain; we exit when the last worker is gone.
    Stopping,
}

/// A dead worker's gauges go to 0 under its `stat_id` (its pid): what it counted is gone,
/// and a StatsD backend would otherwise keep its last values. A worker that exits on its own
/// has emitted its zeros already; these change nothing then.
fn zero_worker_gauges(config: &g3proxy_shared::config::Config, group: &str, pid: u32) {
    let Some(stat) = &config.stat else {
        return;
    };
    let Ok(mut sink) = g3proxy_shared::statsd::StatsdSink::new(stat, group, pid as u64) else {
        return;
    };
    for server in &config.servers {
        let tags = [("server", server.name()), ("online", "n")];
        sink.gauge("server.task.alive", 0, &tags);
    }
    sink.flush();
}

/// How often the shared user counts of unwatched dead workers are given back.
const USER_LIMITS_RECLAIM: Duration = Duration::from_secs(10);

pub struct Supervisor {
    pub options: Options,
    pub listeners: ListenerSet,
    generations: BTreeMap<u64, Generation>,
    next_generation: u64,
    events: mpsc::UnboundedSender<Event>,
    pub state: State,
    offline_epoch: u64,
    /// Workers a predecessor left behind, to be told to drain once we serve.
    pub adopted_workers: Vec<u32>,
    /// Set when the process should leave its loop now (systemd offline, failed start).
    pub exit_code: Option<u8>,
    /// A successor took over: the group socket path is its now.
    pub handed_over: bool,
    /// The users last published to each user group, for every later worker.
    pub published_users: BTreeMap<String, g3proxy_shared::ipc::worker::Published>,
    pub published_escapers: BTreeMap<String, g3proxy_shared::ipc::worker::Published>,
    /// The group-wide user counters, to give back what a dead worker held.
    pub user_limits: Option<g3proxy_shared::user_limits::UserLimits>,
    /// Our own metrics of the fleet, when the config has a `stat` section.
    pub fleet_metrics: Option<crate::metrics::FleetMetrics>,
}

/// How a generation's config and binary are chosen.
pub enum Source {
    Loaded(Box<Config>, ConfigBundle),
    /// Re-read the config from disk (reload).
    Disk,
    /// The current config, with the worker binary now on disk (upgrade).
    CurrentConfig,
}

impl Supervisor {
    pub fn new(
        options: Options,
        listeners: ListenerSet,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Supervisor {
            options,
            listeners,
            generations: BTreeMap::new(),
            next_generation: 1,
            events,
            state: State::Serving,
            offline_epoch: 0,
            adopted_workers: Vec::new(),
            exit_code: None,
            handed_over: false,
            published_users: BTreeMap::new(),
            published_escapers: BTreeMap::new(),
            user_limits: None,
            fleet_metrics: None,
        }
    }

    /// Numbers go on from those of the workers a predecessor left, never backwards.
    pub fn number_after(&mut self, generation: u64) {
        self.next_generation = self.next_generation.max(generation + 1);
    }

    pub fn finished(&self) -> bool {
        self.exit_code.is_some() || (self.state == State::Stopping && self.generations.is_empty())
    }

    fn current(&self) -> Option<&Generation> {
        self.generations
            .values()
            .rev()
            .find(|g| g.state == GenerationState::Current)
    }

    fn starting(&self) -> Option<u64> {
        self.generations
            .values()
            .find(|g| g.state == GenerationState::Starting)
            .map(|g| g.number)
    }

    fn status_line(&self) -> String {
        let draining = self
            .generations
            .values()
            .filter(|g| matches!(g.state, GenerationState::Draining { .. }))
            .count();
        match self.current() {
            Some(current) => format!("serving gen {}; {draining} draining", current.number),
            None => format!("no generation serving; {draining} draining"),
        }
    }

    fn after(&self, delay: Duration, event: Event) {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(event);
        });
    }

    pub async fn handle(&mut self, event: Event) {
        match event {
            Event::Signal(SignalAction::Reload) => self.start_generation(Source::Disk, None).await,
            Event::Signal(SignalAction::Offline) => {
                if self.offline() {
                    self.exit_code = Some(0);
                }
            }
            Event::Signal(SignalAction::ForceQuit) => self.force_quit_all_and_stop(),
            Event::Ctl { request, reply } => self.control(request, reply).await,
            Event::Worker { id, pid, message } => self.worker_message(id, pid, message),
            Event::WorkerExited { id, pid, status } => self.worker_exited(id, pid, status),
            Event::RestartWorker { id } => self.restart_worker(id).await,
            Event::ReadyTimeout { generation } => {
                if self
                    .generations
                    .get(&generation)
                    .is_some_and(|g| g.state == GenerationState::Starting)
                {
                    let timeout = self.generations[&generation]
                        .config
                        .runtime
                        .generation_ready_timeout
                        .0;
                    self.rollback(
                        generation,
                        format!("generation {generation} was not ready within {timeout:?}"),
                    );
                }
            }
            Event::OfflineTimeout { epoch } => {
                if self.state == (State::OfflineWaiting { epoch }) {
                    info!("no successor came within server_offline_delay; stopping");
                    self.stop();
                }
            }
            Event::Started(result) => self.started(result),
            Event::DrainBackstop { generation } => self.drain_backstop(generation),
            Event::ReclaimUserLimits => self.reclaim_user_limits(),
            Event::EmitFleetMetrics => self.emit_fleet_metrics(),
            Event::Exit => self.exit_code = Some(self.exit_code.unwrap_or(0)),
        }
    }

    /// Every `stat.emit_interval`, when the config has a `stat` section.
    pub fn emit_fleet_metrics(&mut self) {
        let Some(metrics) = &mut self.fleet_metrics else {
            return;
        };
        metrics.emit(&self.generations);
        let interval = metrics.interval;
        self.after(interval, Event::EmitFleetMetrics);
    }

    /// Every few seconds, and when one of our workers exits: the workers we did not spawn
    /// die without an event of ours.
    pub fn reclaim_user_limits(&self) {
        let Some(limits) = &self.user_limits else {
            return;
        };
        let reclaimed = limits.reclaim(crate::handoff::process_running);
        if reclaimed > 0 {
            info!("user limits: gave back what {reclaimed} exited worker(s) held");
        }
        self.after(USER_LIMITS_RECLAIM, Event::ReclaimUserLimits);
    }

    /// Before the process exits: every worker link is flushed and closed.
    pub async fn close_links(&mut self) {
        for generation in self.generations.values_mut() {
            for slot in &mut generation.slots {
                if let Some(process) = slot.process.take() {
                    process.close_link().await;
                }
            }
        }
    }

    /// Starts a new generation; `reply` hears the outcome once it is current or rolled back.
    pub async fn start_generation(
        &mut self,
        source: Source,
        reply: Option<oneshot::Sender<CtlReply>>,
    ) {
        let answer = |reply: Option<oneshot::Sender<CtlReply>>, message: String| {
            info!("{message}");
            if let Some(reply) = reply {
                let _ = reply.send(CtlReply::error(message));
            }
        };
        if let Some(starting) = self.starting() {
            return answer(
                reply,
                format!("generation {starting} is still starting; try again when it is ready"),
            );
        }
        if matches!(self.state, State::Stopping | State::HandingOff) {
            return answer(reply, "the supervisor is handing over or stopping".into());
        }
        let (config, bundle) = match source {
            Source::Loaded(config, bundle) => (Arc::new(*config), Arc::new(bundle)),
            Source::CurrentConfig if self.current().is_some() => {
                let current = self.current().expect("checked above");
                (current.config.clone(), current.bundle.clone())
            }
            Source::Disk | Source::CurrentConfig => match config::load(&self.options.config_path) {
                Ok((config, bundle)) => {
                    for warning in &config.warnings {
                        warn!("{warning}");
                    }
                    (Arc::new(config), Arc::new(bundle))
                }
                Err(error) => {
                    return answer(
                        reply,
                        format!("config refused, still serving the old one: {error}"),
                    );
                }
            },
        };
        let binary = match PinnedBinary::open(&self.options.worker_binary) {
            Ok(binary) => Arc::new(binary),
            Err(error) => return answer(reply, format!("{error:#}")),
        };
        let wanted = listeners::plan(&config);
        let newly_bound = match self.listeners.bind_missing(&wanted) {
            Ok(bound) => bound,
            Err(error) => return answer(reply, format!("{error:#}")),
        };
        systemd::store_listeners(&self.listeners, &newly_bound);
        let number = self.next_generation;
        self.next_generation += 1;
        let worker_count = config.worker_count();
        let ready_timeout = config.runtime.generation_ready_timeout.0;
        let slots = (0..worker_count)
            .map(|_| Slot {
                process: None,
                ready: false,
                started: Instant::now(),
                failures: 0,
            })
            .collect();
        self.generations.insert(
            number,
            Generation {
                number,
                state: GenerationState::Starting,
                config,
                bundle,
                binary,
                version: None,
                slots,
                waiting: reply,
                newly_bound,
            },
        );
        info!("starting generation {number} with {worker_count} workers");
        systemd::status(&format!("starting gen {number}; {}", self.status_line()));
        for index in 0..worker_count {
            if let Err(error) = self
                .spawn_worker(WorkerId {
                    generation: number,
                    index,
                })
                .await
            {
                let message = format!(
                    "worker {index} of generation {number} could not be started: {error:#}"
                );
                return self.rollback(number, message);
            }
        }
        self.after(ready_timeout, Event::ReadyTimeout { generation: number });
    }

    async fn spawn_worker(&mut self, id: WorkerId) -> anyhow::Result<()> {
        let Some(generation) = self.generations.get(&id.generation) else {
            return Ok(());
        };
        let config = generation.config.clone();
        let entries: Vec<ListenerEntry> = listeners::plan_for_worker(&config, id.index);
        let mut fds: Vec<OwnedFd> = Vec::new();
        for entry in &entries {
            let fd = self
                .listeners
                .duplicate(&ListenerKey::of(entry))
                .ok_or_else(|| anyhow::anyhow!("listener {} is not open", entry.address))?;
            fds.push(fd);
        }
        let runtime = match &config.worker {
            Some(worker) => RuntimeTuning {
                threads: worker.thread_number_per_runtime.unwrap_or(1).max(1),
                thread_name: None,
                thread_stack_size: worker.thread_stack_size.map(|size| size.0 as usize),
                max_io_events_per_tick: worker.max_io_events_per_tick,
            },
            None => RuntimeTuning {
                threads: config
                    .runtime
                    .thread_number
                    .unwrap_or_else(cpu_count)
                    .max(1),
                thread_name: config.runtime.thread_name.clone(),
                thread_stack_size: config.runtime.thread_stack_size.map(|size| size.0 as usize),
                max_io_events_per_tick: config.runtime.max_io_events_per_tick,
            },
        };
        let cpus = config
            .worker
            .as_ref()
            .and_then(|w| w.sched_affinity.cpus_for(id.index, cpu_count()));
        let start = WorkerStart {
            generation: id.generation,
            worker_index: id.index,
            worker_count: config.worker_count(),
            group: self.options.group.clone(),
            control_dir: self.options.control_dir.clone(),
            config: (*generation.bundle).clone(),
            listeners: entries,
            cpus,
            runtime,
            verbosity: self.options.verbosity,
            process_log: self.options.process_log,
            panic_quit: self.options.panic_quit,
            published_users: self.published_users.clone(),
            published_escapers: self.published_escapers.clone(),
        };
        let binary = generation.binary.clone();
        let process = worker::spawn(&binary, id, start, fds, self.events.clone()).await?;
        if let Some(slot) = self
            .generations
            .get_mut(&id.generation)
            .and_then(|g| g.slots.get_mut(id.index))
        {
            slot.process = Some(process);
            slot.ready = false;
            slot.started = Instant::now();
        }
        Ok(())
    }

    /// A generation that cannot become ready goes away; the serving one is never touched.
    fn rollback(&mut self, number: u64, error: String) {
        let Some(mut generation) = self.generations.remove(&number) else {
            return;
        };
        info!("generation {number} rolled back: {error}");
        if let Some(metrics) = &mut self.fleet_metrics {
            metrics.rolled_back += 1;
        }
        // Workers already READY may hold accepted connections: they drain instead of dying.
        let deadline = SystemTime::now() + generation.config.runtime.drain_timeout();
        for slot in &generation.slots {
            if let Some(process) = &slot.process {
                if slot.ready {
                    process.send(ToWorker::Drain {
                        deadline_unix_secs: unix_secs(deadline),
                    });
                } else {
                    process.kill();
                }
            }
        }
        let in_use = self.listeners_in_use();
        let unused: Vec<ListenerKey> = generation
            .newly_bound
            .iter()
            .filter(|k| !in_use.contains(k))
            .cloned()
            .collect();
        systemd::forget_listeners(&self.listeners.close(&unused));
        if let Some(reply) = generation.waiting.take() {
            let _ = reply.send(CtlReply::error(error));
        }
        if generation.has_processes() {
            generation.state = GenerationState::Draining { deadline };
            self.generations.insert(number, generation);
        }
        systemd::status(&self.status_line());
    }

    fn listeners_in_use(&self) -> BTreeSet<ListenerKey> {
        self.generations
            .values()
            .filter(|g| {
                matches!(
                    g.state,
                    GenerationState::Starting | GenerationState::Current
                )
            })
            .flat_map(|g| listeners::plan(&g.config).into_keys())
            .collect()
    }

    fn switch_to(&mut self, number: u64) {
        let previous: Vec<u64> = self
            .generations
            .values()
            .filter(|g| g.state == GenerationState::Current)
            .map(|g| g.number)
            .collect();
        let Some(generation) = self.generations.get_mut(&number) else {
            return;
        };
        generation.state = GenerationState::Current;
        let waiting = generation.waiting.take();
        for old in previous {
            self.drain(old);
        }
        let in_use = self.listeners_in_use();
        systemd::forget_listeners(&self.listeners.retain(&in_use));
        self.bound_draining();
        info!("generation {number} is serving");
        if let Some(metrics) = &mut self.fleet_metrics {
            metrics.served += 1;
        }
        if let Some(reply) = waiting {
            let _ = reply.send(CtlReply::done(CtlResponse::Notice(format!(
                "success: generation {number} is serving"
            ))));
        }
        systemd::status(&self.status_line());
    }

    fn drain(&mut self, number: u64) {
        let Some(generation) = self.generations.get_mut(&number) else {
            return;
        };
        let runtime = &generation.config.runtime;
        let deadline = SystemTime::now() + runtime.drain_timeout();
        // Workers close what is left at the deadline themselves; one that still lives
        // `task_quit_timeout` later is killed.
        let backstop = runtime.drain_timeout() + runtime.task_quit_timeout.0;
        generation.state = GenerationState::Draining { deadline };
        for process in generation.processes() {
            process.send(ToWorker::Drain {
                deadline_unix_secs: unix_secs(deadline),
            });
        }
        if !generation.has_processes() {
            self.generations.remove(&number);
            return;
        }
        self.after(backstop, Event::DrainBackstop { generation: number });
    }

    fn drain_backstop(&mut self, number: u64) {
        let Some(generation) = self.generations.get(&number) else {
            return;
        };
        if matches!(generation.state, GenerationState::Draining { .. }) {
            for process in generation.processes() {
                info!(
                    "worker pid {} of generation {number} outlived its drain deadline; killing it",
                    process.pid
                );
                process.kill();
            }
        }
    }

    /// Past `max_draining_generations`, the oldest draining generations are closed.
    fn bound_draining(&mut self) {
        let Some(max) = self
            .current()
            .map(|g| g.config.runtime.max_draining_generations)
        else {
            return;
        };
        let draining: Vec<u64> = self
            .generations
            .values()
            .filter(|g| matches!(g.state, GenerationState::Draining { .. }))
            .map(|g| g.number)
            .collect();
        for number in draining.iter().take(draining.len().saturating_sub(max)) {
            info!("more than {max} generations draining: closing generation {number}");
            for process in self.generations[number].processes() {
                process.send(ToWorker::ForceQuit);
            }
        }
    }

    /// The generation of worker `id`, if `pid` is still the process in its slot (a message
    /// from a replaced process is stale).
    fn generation_of(&mut self, id: WorkerId, pid: u32) -> Option<&mut Generation> {
        let generation = self.generations.get_mut(&id.generation)?;
        let current_pid = generation
            .slots
            .get(id.index)?
            .process
            .as_ref()
            .map(|p| p.pid);
        (current_pid == Some(pid)).then_some(generation)
    }

    fn worker_message(&mut self, id: WorkerId, pid: u32, message: FromWorker) {
        let Some(generation) = self.generation_of(id, pid) else {
            return;
        };
        let slot = &mut generation.slots[id.index];
        match message {
            FromWorker::Ready { version, .. } => {
                slot.ready = true;
                generation.version = Some(version);
                if generation.state == GenerationState::Starting && generation.all_ready() {
                    self.switch_to(id.generation);
                }
            }
            FromWorker::StartFailed { error } => {
                let message = format!(
                    "worker {} of generation {} failed to start: {error}",
                    id.index, id.generation
                );
                if generation.state == GenerationState::Starting {
                    self.rollback(id.generation, message);
                } else {
                    info!("{message}");
                }
            }
            FromWorker::Status { .. }
            | FromWorker::Listeners { .. }
            | FromWorker::UserNames { .. }
            | FromWorker::Resolved { .. }
            | FromWorker::Applied { .. } => {}
        }
    }

    fn worker_exited(&mut self, id: WorkerId, pid: u32, status: String) {
        if let Some(limits) = &self.user_limits {
            limits.reclaim(crate::handoff::process_running);
        }
        let stopping = self.state == State::Stopping;
        let group = self.options.group.clone();
        let Some(generation) = self.generation_of(id, pid) else {
            return;
        };
        zero_worker_gauges(&generation.config, &group, pid);
        let slot = &mut generation.slots[id.index];
        slot.process = None;
        let was_ready = std::mem::replace(&mut slot.ready, false);
        match generation.state {
            GenerationState::Starting => {
                self.rollback(
                    id.generation,
                    format!(
                        "worker {} of generation {} exited while starting: {status}",
                        id.index, id.generation
                    ),
                );
            }
            GenerationState::Current if !stopping => {
                // A worker that ran a while and then died starts over with the shortest delay.
                if slot.started.elapsed() > Duration::from_secs(30) {
                    slot.failures = 0;
                }
                let delay = restart_backoff(slot.failures);
                slot.failures += 1;
                info!(
                    "worker {} (pid {pid}) of generation {} exited ({status}, ready: {was_ready}); restarting in {delay:?}",
                    id.index, id.generation
                );
                self.after(delay, Event::RestartWorker { id });
                if let Some(metrics) = &mut self.fleet_metrics {
                    metrics.worker_restarts += 1;
                }
            }
            GenerationState::Current | GenerationState::Draining { .. } => {
                if !generation.has_processes() {
                    info!("generation {} is gone", id.generation);
                    self.generations.remove(&id.generation);
                    systemd::status(&self.status_line());
                }
            }
        }
    }

    async fn restart_worker(&mut self, id: WorkerId) {
        let current = self
            .generations
            .get(&id.generation)
            .is_some_and(|g| g.state == GenerationState::Current);
        let empty = self
            .generations
            .get(&id.generation)
            .and_then(|g| g.slots.get(id.index))
            .is_some_and(|s| s.process.is_none());
        if !current || !empty || self.state == State::Stopping {
            return;
        }
        if let Err(error) = self.spawn_worker(id).await {
            let delay = self
                .generations
                .get_mut(&id.generation)
                .and_then(|g| g.slots.get_mut(id.index))
                .map(|slot| {
                    slot.failures += 1;
                    restart_backoff(slot.failures)
                });
            info!(
                "cannot restart worker {} of generation {}: {error:#}",
                id.index, id.generation
            );
            if let Some(delay) = delay {
                self.after(delay, Event::RestartWorker { id });
                if let Some(metrics) = &mut self.fleet_metrics {
                    metrics.worker_restarts += 1;
                }
            }
        }
    }

    /// Goes offline; returns true when the process is to exit now (under systemd).
    fn offline(&mut self) -> bool {
        if self.state != State::Serving {
            return false;
        }
        if systemd::is_present() {
            // systemd runs our successor only once we have exited: leave the workers serving
            // on their sockets (systemd keeps copies) until the successor takes over.
            let delay = self.current().map_or(Duration::from_secs(4), |g| {
                g.config.runtime.server_offline_delay.0
            });
            for generation in self.generations.values() {
                for process in generation.processes() {
                    process.send(ToWorker::SupervisorLeaving {
                        offline_delay_millis: delay.as_millis() as u64,
                    });
                }
            }
            info!("offline: leaving the workers to our successor");
            systemd::stopping();
            self.state = State::Stopping;
            return true;
        }
        self.offline_epoch += 1;
        self.state = State::OfflineWaiting {
            epoch: self.offline_epoch,
        };
        let delay = self.current().map_or(Duration::from_secs(4), |g| {
            g.config.runtime.server_offline_delay.0
        });
        info!("offline: still serving; waiting {delay:?} for a successor");
        self.after(
            delay,
            Event::OfflineTimeout {
                epoch: self.offline_epoch,
            },
        );
        false
    }

    /// A plain stop: close every listener and drain every generation.
    fn stop(&mut self) {
        self.state = State::Stopping;
        systemd::stopping();
        let numbers: Vec<u64> = self.generations.keys().copied().collect();
        for number in numbers {
            match self.generations[&number].state {
                GenerationState::Starting => self.rollback(number, "stopping".into()),
                GenerationState::Current => self.drain(number),
                GenerationState::Draining { .. } => {}
            }
        }
        systemd::forget_listeners(&self.listeners.retain(&BTreeSet::new()));
    }

    fn force_quit_all_and_stop(&mut self) {
        self.stop();
        for generation in self.generations.values() {
            for process in generation.processes() {
                process.send(ToWorker::ForceQuit);
            }
        }
    }

    fn started(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                systemd::ready(&self.status_line());
                let adopted = std::mem::take(&mut self.adopted_workers);
                if !adopted.is_empty() {
                    let control_dir = self.options.control_dir.clone();
                    let group = self.options.group.clone();
                    let timeout = self.current().map_or(Duration::from_secs(36_000), |g| {
                        g.config.runtime.drain_timeout()
                    });
                    let deadline = unix_secs(SystemTime::now() + timeout);
                    tokio::spawn(crate::handoff::drain_adopted(
                        control_dir,
                        group,
                        adopted,
                        deadline,
                    ));
                }
            }
            Err(error) => {
                tracing::error!("cannot start: {error}");
                self.exit_code = Some(1);
            }
        }
    }
}
