//! `fleet` (and `list generations`): every generation with its workers, tasks and deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use g3proxy_shared::ipc::control::FleetStatus;

fn deadline(unix_secs: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix_secs);
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("in {}s", left.as_secs()),
        Err(_) => "passed".into(),
    }
}

pub fn print(status: &FleetStatus) {
    let group = if status.group.is_empty() {
        "\"\""
    } else {
        &status.group
    };
    println!(
        "group {group}: supervisor pid {} (version {}), {}",
        status.supervisor_pid, status.supervisor_version, status.state
    );
    for generation in &status.generations {
        let drain = generation
            .drain_deadline_unix_secs
            .map(|d| format!(", drain deadline {}", deadline(d)))
            .unwrap_or_default();
        println!(
            "generation {} {} version {} {}{drain}",
            generation.generation, generation.state, generation.version, generation.binary
        );
        for worker in &generation.workers {
            let oldest = worker
                .oldest_task_age_secs
                .map(|a| format!(", oldest task {a}s"))
                .unwrap_or_default();
            println!(
                "  worker {} pid {} {:?}: {} tasks{oldest}",
                worker.index, worker.pid, worker.state, worker.alive_tasks
            );
        }
    }
}
