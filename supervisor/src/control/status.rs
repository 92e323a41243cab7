//! Fleet and server status, assembled by asking each worker over its own control socket,
//! plus the workers of this group that a predecessor left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use g3proxy_shared::ipc::control::{
    CtlResponse, FleetStatus, GenerationRow, ServerStatus, WorkerRow,
};
use g3proxy_shared::ipc::worker::{FromWorker, WorkerState, WorkerStatus};

use crate::event::{Query, SnapshotGeneration};
use crate::handoff::{ask_worker, publish_to, query_dynamic_users, query_status, worker_pids_in};

pub async fn answer(
    control_dir: &Path,
    group: &str,
    generations: Vec<SnapshotGeneration>,
    query: Query,
) -> CtlResponse {
    match query {
        Query::DynamicUsers { group: user_group } => {
            dynamic_users(control_dir, group, &generations, &user_group).await
        }
        Query::Resolve(request) => {
            for worker in generations.iter().flat_map(|g| &g.workers) {
                match ask_worker(control_dir, group, worker.pid, request.clone()).await {
                    Some(FromWorker::Resolved {
                        answer: Some(Ok(ips)),
                        ..
                    }) => return CtlResponse::Names(ips),
                    Some(FromWorker::Resolved {
                        answer: Some(Err(reason)),
                        ..
                    }) => return CtlResponse::Text(reason),
                    Some(FromWorker::Resolved { answer: None, .. }) => {
                        return CtlResponse::Error("no such resolver in the serving worker".into());
                    }
                    _ => continue,
                }
            }
            CtlResponse::Error("no worker answered".into())
        }
        Query::Publish(publish) => {
            // Our workers and those a predecessor left: every one that has a control socket.
            let mut unconfirmed = Vec::new();
            for pid in worker_pids_in(control_dir, group) {
                if !publish_to(control_dir, group, pid, publish.clone()).await {
                    unconfirmed.push(pid.to_string());
                }
            }
            CtlResponse::Notice(match unconfirmed.is_empty() {
                true => "success".into(),
                // Kept and sent on the link all the same; a worker that did not answer (one
                // still starting, or exiting) has them from its start message or its link.
                false => format!(
                    "success; worker(s) {} did not confirm",
                    unconfirmed.join(", ")
                ),
            })
        }
        Query::ServerStatus { name } => {
            let statuses = collect_statuses(control_dir, group, &generations).await;
            server_status(&statuses, &name)
        }
        Query::Fleet { state } => {
            let statuses = collect_statuses(control_dir, group, &generations).await;
            fleet(control_dir, group, generations, &statuses, state).await
        }
    }
}

async fn collect_statuses(
    control_dir: &Path,
    group: &str,
    generations: &[SnapshotGeneration],
) -> BTreeMap<u32, WorkerStatus> {
    let mut statuses = BTreeMap::new();
    for generation in generations {
        for worker in &generation.workers {
            if let Some(status) = query_status(control_dir, group, worker.pid).await {
                statuses.insert(worker.pid, status);
            }
        }
    }
    statuses
}

/// The names, as the first worker that answers has them.
async fn dynamic_users(
    control_dir: &Path,
    group: &str,
    generations: &[SnapshotGeneration],
    user_group: &str,
) -> CtlResponse {
    for worker in generations.iter().flat_map(|g| &g.workers) {
        match query_dynamic_users(control_dir, group, worker.pid, user_group).await {
            Some(Some(names)) => return CtlResponse::Names(names),
            Some(None) => return CtlResponse::Error(format!("no user group named {user_group}")),
            None => continue,
        }
    }
    CtlResponse::Error("no worker answered".into())
}

fn server_status(statuses: &BTreeMap<u32, WorkerStatus>, name: &str) -> CtlResponse {
    let mut total = ServerStatus {
        online: false,
        alive_tasks: 0,
        total_conn: 0,
        total_task: 0,
    };
    for server in statuses
        .values()
        .flat_map(|s| s.servers.iter())
        .filter(|s| s.name == name)
    {
        total.online |= server.online;
        total.alive_tasks += server.alive_tasks;
        total.total_conn += server.total_conn;
        total.total_task += server.total_task;
    }
    CtlResponse::ServerStatus(total)
}

async fn fleet(
    control_dir: &Path,
    group: &str,
    generations: Vec<SnapshotGeneration>,
    statuses: &BTreeMap<u32, WorkerStatus>,
    state: String,
) -> CtlResponse {
    let mut rows: Vec<GenerationRow> = generations
        .iter()
        .map(|generation| GenerationRow {
            generation: generation.generation,
            state: generation.state.clone(),
            binary: generation.binary.clone(),
            version: generation.version.clone(),
            drain_deadline_unix_secs: generation.drain_deadline_unix_secs,
            workers: generation
                .workers
                .iter()
                .map(|w| row(w.index, w.pid, statuses.get(&w.pid)))
                .collect(),
        })
        .collect();
    let own: BTreeSet<u32> = generations
        .iter()
        .flat_map(|g| g.workers.iter().map(|w| w.pid))
        .collect();
    let mut adopted: BTreeMap<u64, GenerationRow> = BTreeMap::new();
    for pid in worker_pids_in(control_dir, group)
        .into_iter()
        .filter(|pid| !own.contains(pid))
    {
        let Some(status) = query_status(control_dir, group, pid).await else {
            continue;
        };
        let entry = adopted
            .entry(status.generation)
            .or_insert_with(|| GenerationRow {
                generation: status.generation,
                state: "adopted".into(),
                binary: String::new(),
                version: status.version.clone(),
                drain_deadline_unix_secs: status.drain_deadline_unix_secs,
                workers: Vec::new(),
            });
        entry
            .workers
            .push(row(status.worker_index, pid, Some(&status)));
    }
    rows.extend(adopted.into_values());
    CtlResponse::Fleet(FleetStatus {
        group: group.to_string(),
        supervisor_pid: std::process::id(),
        supervisor_version: g3proxy_shared::VERSION.to_string(),
        state,
        generations: rows,
    })
}

fn row(index: usize, pid: u32, status: Option<&WorkerStatus>) -> WorkerRow {
    match status {
        Some(status) => WorkerRow {
            pid,
            index,
            state: status.state,
            alive_tasks: status.alive_tasks,
            tasks_by_kind: status.tasks_by_kind.clone(),
            oldest_task_age_secs: status.oldest_task_age_secs,
            servers: status.servers.clone(),
        },
        None => WorkerRow {
            pid,
            index,
            state: WorkerState::Unknown,
            alive_tasks: 0,
            tasks_by_kind: Default::default(),
            oldest_task_age_secs: None,
            servers: Vec::new(),
        },
    }
}
