//! Control requests, as the main loop answers them: the module lists and status of g3proxy-ctl,
//! reload and upgrade, offline and cancel, force-quit, and the predecessor's side of a handoff.

use std::time::Duration;

use g3proxy_shared::config::escapers::{EscaperType, FloatBinds, FloatPeer};
use g3proxy_shared::config::user_groups::{DynamicFormat, parse_dynamic_users};
use g3proxy_shared::config::{self, Config};
use g3proxy_shared::ipc::control::{CtlRequest, CtlResponse, ModuleKind};
use g3proxy_shared::ipc::worker::{ListenerEntry, Published, ToWorker};
use tokio::sync::oneshot;

use super::{Generation, GenerationState, Source, State, Supervisor};
use crate::event::{CtlReply, Event, Query};
use crate::published::Record;
use tracing::{info, warn};

impl Supervisor {
    pub(super) async fn control(&mut self, request: CtlRequest, reply: oneshot::Sender<CtlReply>) {
        let answer = match request {
            CtlRequest::Version => {
                CtlReply::done(CtlResponse::Version(g3proxy_shared::VERSION.to_string()))
            }
            CtlRequest::Offline => {
                if self.offline() {
                    // The control connection tells us to exit once the answer is written.
                    let _ = reply.send(CtlReply::DoneThenExit(CtlResponse::Notice(
                        "success".into(),
                    )));
                    self.after(Duration::from_secs(2), Event::Exit);
                    return;
                }
                CtlReply::success()
            }
            CtlRequest::CancelShutdown => match self.state {
                State::OfflineWaiting { .. } => {
                    self.state = State::Serving;
                    info!("shutdown cancelled; serving on");
                    CtlReply::success()
                }
                _ => CtlReply::error("no shutdown is waiting"),
            },
            CtlRequest::ForceQuit { server } => {
                let mut found = false;
                for generation in self
                    .generations
                    .values()
                    .filter(|g| matches!(g.state, GenerationState::Draining { .. }))
                {
                    if generation.config.server(&server).is_some() {
                        found = true;
                        generation
                            .processes()
                            .for_each(|p| p.send(ToWorker::ForceQuit));
                    }
                }
                if found {
                    CtlReply::success()
                } else {
                    CtlReply::error(format!("no offline server named {server}"))
                }
            }
            CtlRequest::ForceQuitAll => {
                for generation in self
                    .generations
                    .values()
                    .filter(|g| matches!(g.state, GenerationState::Draining { .. }))
                {
                    generation
                        .processes()
                        .for_each(|p| p.send(ToWorker::ForceQuit));
                }
                self.tell_foreign_workers(ToWorker::ForceQuit);
                CtlReply::success()
            }
            CtlRequest::ListStaticUsers { group } => match self.current() {
                None => CtlReply::error("no generation is serving"),
                Some(current) => match current
                    .config
                    .user_groups
                    .iter()
                    .find(|g| g.name() == group)
                {
                    None => CtlReply::error(format!("no user group named {group}")),
                    Some(found) => CtlReply::done(CtlResponse::Names(
                        found
                            .basic()
                            .static_users
                            .iter()
                            .map(|u| u.name.clone())
                            .collect(),
                    )),
                },
            },
            CtlRequest::ListDynamicUsers { group } => match self.current() {
                Some(current) if current.config.user_groups.iter().any(|g| g.name() == group) => {
                    CtlReply::QueryWorkers(vec![current.snapshot()], Query::DynamicUsers { group })
                }
                _ => CtlReply::error(format!("no user group named {group}")),
            },
            CtlRequest::PublishUsers { group, users } => self.publish_users(group, users),
            CtlRequest::PublishEscaper { escaper, data } => self.publish_escaper(escaper, data),
            CtlRequest::QueryResolver {
                name,
                domain,
                strategy,
                resolution_delay_ms,
            } => match self.current() {
                Some(current) if current.config.resolvers.iter().any(|r| r.name() == name) => {
                    let query = ToWorker::QueryResolver {
                        id: 0,
                        name,
                        domain,
                        strategy,
                        resolution_delay_ms,
                    };
                    CtlReply::QueryWorkers(vec![current.snapshot()], Query::Resolve(query))
                }
                _ => CtlReply::error(format!("no resolver named {name}")),
            },
            CtlRequest::List { kind } => match self.current() {
                None => CtlReply::error("no generation is serving"),
                Some(current) => {
                    CtlReply::done(CtlResponse::Names(module_names(&current.config, kind)))
                }
            },
            CtlRequest::ServerStatus { name } => match self.current() {
                Some(current) if current.config.server(&name).is_some() => {
                    CtlReply::QueryWorkers(vec![current.snapshot()], Query::ServerStatus { name })
                }
                _ => CtlReply::error(format!("no server named {name}")),
            },
            CtlRequest::Fleet => {
                let state = match self.state {
                    State::Serving => "serving",
                    State::OfflineWaiting { .. } => "offline, waiting for a successor",
                    State::HandingOff => "handing over",
                    State::Stopping => "stopping",
                };
                CtlReply::QueryWorkers(
                    self.generations
                        .values()
                        .map(Generation::snapshot)
                        .collect(),
                    Query::Fleet {
                        state: state.into(),
                    },
                )
            }
            CtlRequest::Reload => return self.start_generation(Source::Disk, Some(reply)).await,
            // g3proxy re-reads the one entry; here the whole config is read again (the other
            // entries are unchanged, or the operator meant them too) and a new generation
            // serves it, with the same checks and rollback as a reload. The entry must exist.
            CtlRequest::ReloadEntry { kind, name } => {
                match config::load(&self.options.config_path) {
                    Err(error) => CtlReply::error(format!(
                        "config refused, still serving the old one: {error}"
                    )),
                    Ok((config, _)) if !module_names(&config, kind).contains(&name) => {
                        CtlReply::error(format!("no {} named {name} in the config", kind.label()))
                    }
                    Ok((config, bundle)) => {
                        for warning in &config.warnings {
                            warn!("{warning}");
                        }
                        let source = Source::Loaded(Box::new(config), bundle);
                        return self.start_generation(source, Some(reply)).await;
                    }
                }
            }
            CtlRequest::Upgrade => {
                return self
                    .start_generation(Source::CurrentConfig, Some(reply))
                    .await;
            }
            CtlRequest::HandoffBegin { successor_pid } => self.handoff_begin(successor_pid),
            CtlRequest::HandoffCommit => {
                info!("successor is serving; draining and leaving");
                self.handed_over = true;
                self.stop();
                CtlReply::success()
            }
            CtlRequest::HandoffAbort { reason } => {
                if self.state == State::HandingOff {
                    self.state = State::Serving;
                }
                info!("successor failed ({reason}); serving on");
                CtlReply::success()
            }
        };
        let _ = reply.send(answer);
    }

    fn handoff_begin(&mut self, successor_pid: u32) -> CtlReply {
        if matches!(self.state, State::Stopping | State::HandingOff) {
            return CtlReply::error("already handing over or stopping");
        }
        if self.starting().is_some() {
            return CtlReply::error("a generation is starting; try again when it is ready");
        }
        info!("handing listeners over to successor pid {successor_pid}");
        self.state = State::HandingOff;
        let mut entries = Vec::new();
        let mut fds = Vec::new();
        for key in self.listeners.keys() {
            if let Some(fd) = self.listeners.duplicate(key) {
                entries.push(ListenerEntry {
                    server: String::new(),
                    address: key.address,
                    slot: key.slot,
                    instance: key.instance,
                    transparent: key.transparent,
                });
                fds.push(fd);
            }
        }
        let worker_pids = self
            .generations
            .values()
            .flat_map(|g| g.processes().map(|p| p.pid).collect::<Vec<_>>())
            .collect();
        CtlReply::Done(
            CtlResponse::HandoffListeners {
                entries,
                worker_pids,
            },
            fds,
        )
    }
}

/// The names of the config's entries of `kind`.
fn module_names(config: &Config, kind: ModuleKind) -> Vec<String> {
    match kind {
        ModuleKind::Server => config
            .servers
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        ModuleKind::Escaper => config
            .escapers
            .iter()
            .map(|e| e.name().to_string())
            .collect(),
        ModuleKind::Resolver => config
            .resolvers
            .iter()
            .map(|r| r.name().to_string())
            .collect(),
        ModuleKind::UserGroup => config
            .user_groups
            .iter()
            .map(|g| g.name().to_string())
            .collect(),
        ModuleKind::Auditor => config.auditors.clone(),
    }
}

impl Supervisor {
    /// Sends `message` to the group's workers we did not spawn, through their control
    /// sockets (off the main loop).
    fn tell_foreign_workers(&self, message: ToWorker) {
        let own: Vec<u32> = self
            .generations
            .values()
            .flat_map(|g| g.processes().map(|p| p.pid).collect::<Vec<_>>())
            .collect();
        tokio::spawn(crate::handoff::tell_foreign(
            self.options.control_dir.clone(),
            self.options.group.clone(),
            own,
            message,
        ));
    }

    /// `publish-user`: checked, kept (in memory for later generations, on disk for a
    /// successor supervisor, and in the group's `cache` file when it has one), and sent to
    /// every worker.
    fn publish_users(&mut self, group: String, users: String) -> CtlReply {
        let Some(current) = self.current() else {
            return CtlReply::error("no generation is serving");
        };
        let Some(config) = current
            .config
            .user_groups
            .iter()
            .find(|g| g.name() == group)
        else {
            return CtlReply::error(format!("no user group named {group}"));
        };
        let parsed = match parse_dynamic_users(&users, DynamicFormat::Json, "published users") {
            Ok(parsed) => parsed,
            Err(error) => return CtlReply::error(format!("users refused: {error}")),
        };
        if let Some(cache) = &config.basic().cache
            && let Err(error) = crate::published::write_private(cache, &users)
        {
            warn!(
                "user group {group}: cannot write its cache {}: {error}",
                cache.display()
            );
        }
        let published = self.next_publish(users);
        self.published_users
            .insert(group.clone(), published.clone());
        self.save_published(Record::Users);
        info!("user group {group}: {} user(s) published", parsed.len());
        self.announce(ToWorker::PublishUsers { group, published })
    }

    /// `escaper NAME publish DATA`: checked against the float type's form, kept as users
    /// are (in memory, on disk for a successor, in the escaper's cache files), and sent to
    /// every worker. A bad value, an unknown name or an escaper that takes no publish is an
    /// error, and nothing changes.
    fn publish_escaper(&mut self, escaper: String, data: String) -> CtlReply {
        let Some(current) = self.current() else {
            return CtlReply::error("no generation is serving");
        };
        let Some(config) = current.config.escapers.iter().find(|e| e.name() == escaper) else {
            return CtlReply::error(format!("no escaper named {escaper}"));
        };
        let checked = match &config.escaper_type {
            EscaperType::DirectFloat(_) => FloatBinds::parse(&data).map(|b| {
                format!(
                    "{} IPv4 and {} IPv6 bind address(es)",
                    b.v4.len(),
                    b.v6.len()
                )
            }),
            EscaperType::ProxyFloat(_) => {
                FloatPeer::parse_all(&data).map(|peers| format!("{} peer(s)", peers.len()))
            }
            _ => {
                return CtlReply::error(format!(
                    "escaper {escaper} is of type {}: only direct_float and proxy_float take a publish",
                    config.type_name()
                ));
            }
        };
        let summary = match checked {
            Ok(summary) => summary,
            Err(error) => return CtlReply::error(format!("publish refused: {error}")),
        };
        crate::published::write_escaper_cache(config, &data);
        let published = self.next_publish(data);
        self.published_escapers
            .insert(escaper.clone(), published.clone());
        self.save_published(Record::Escapers);
        info!("escaper {escaper}: {summary} published");
        self.announce(ToWorker::PublishEscaper { escaper, published })
    }

    /// The next publish of `text`. Publishes are ordered by time, and strictly, whatever the
    /// clock does: a successor supervisor goes on from a later time than its predecessor's
    /// last publish.
    fn next_publish(&self, text: String) -> Published {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let last = self
            .published_users
            .values()
            .chain(self.published_escapers.values())
            .map(|p| p.sequence)
            .max();
        Published {
            sequence: now.max(last.unwrap_or(0) + 1),
            text,
        }
    }

    fn save_published(&self, record: Record) {
        let published = match record {
            Record::Users => &self.published_users,
            Record::Escapers => &self.published_escapers,
        };
        let (dir, group) = (&self.options.control_dir, &self.options.group);
        if let Err(error) = crate::published::save(dir, group, record, published) {
            warn!("what was published is not saved for a successor: {error}");
        }
    }

    /// Sends a publish to every worker, and answers once every worker that can say so uses
    /// it. Through the link too: a worker still starting has no control socket yet, and its
    /// start message was written before this publish.
    fn announce(&self, publish: ToWorker) -> CtlReply {
        for generation in self.generations.values() {
            generation.processes().for_each(|p| p.send(publish.clone()));
        }
        CtlReply::QueryWorkers(
            self.generations
                .values()
                .map(Generation::snapshot)
                .collect(),
            Query::Publish(publish),
        )
    }
}
