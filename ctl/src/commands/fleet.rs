//! `fleet` (and `list generations`): every generation with its workers, tasks and deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use g3proxy_shared::ipc::control::FleetStatus;

fn seconds_left(unix_secs: u64) -> Option<u64> {
    let at = UNIX_EPOCH + Duration::from_secs(unix_secs);
    at.duration_since(SystemTime::now())
        .ok()
        .map(|left| left.as_secs())
}

fn deadline(unix_secs: u64) -> String {
    match seconds_left(unix_secs) {
        Some(left) => format!("in {left}s"),
        None => "passed".into(),
    }
}

/// ` (connect 2, http 1)`, or nothing when there are no tasks.
fn kinds<'a>(counts: impl Iterator<Item = (&'a str, u64)>) -> String {
    let listed: Vec<String> = counts
        .filter(|(_, count)| *count > 0)
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    if listed.is_empty() {
        String::new()
    } else {
        format!(" ({})", listed.join(", "))
    }
}

/// `9h58m`, `4m05s`, `12s`: a time left as people read it.
fn human(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What is left of the drain, summed over the draining generations: `None` when none drains.
fn progress(status: &FleetStatus) -> Option<String> {
    let draining: Vec<_> = status
        .generations
        .iter()
        .filter(|g| g.state == "draining")
        .collect();
    if draining.is_empty() {
        return None;
    }
    let workers = draining.iter().flat_map(|g| &g.workers);
    let tasks: u64 = workers.clone().map(|w| w.alive_tasks).sum();
    let mut by_kind = std::collections::BTreeMap::new();
    for (kind, count) in workers.clone().flat_map(|w| &w.tasks_by_kind) {
        *by_kind.entry(kind.as_str()).or_insert(0) += count;
    }
    let oldest = workers.filter_map(|w| w.oldest_task_age_secs).max();
    let nearest = draining
        .iter()
        .filter_map(|g| g.drain_deadline_unix_secs)
        .min();
    let mut line = format!(
        "draining: {tasks} task{} left{} in {} generation{}",
        if tasks == 1 { "" } else { "s" },
        kinds(by_kind.iter().map(|(kind, count)| (*kind, *count))),
        draining.len(),
        if draining.len() == 1 { "" } else { "s" }
    );
    if let Some(oldest) = oldest {
        line += &format!(", the oldest {} old", human(oldest));
    }
    match nearest.map(seconds_left) {
        Some(Some(left)) => line += &format!(", closed in {} at the latest", human(left)),
        Some(None) => line += ", deadline passed: closing",
        None => {}
    }
    Some(line)
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
                "  worker {} pid {} {:?}: {} tasks{}{oldest}",
                worker.index,
                worker.pid,
                worker.state,
                worker.alive_tasks,
                kinds(
                    worker
                        .tasks_by_kind
                        .iter()
                        .map(|(kind, count)| (kind.as_str(), *count))
                )
            );
        }
    }
    if let Some(line) = progress(status) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn times_left_read_as_people_say_them() {
        assert_eq!(human(12), "12s");
        assert_eq!(human(245), "4m05s");
        assert_eq!(human(35_880), "9h58m");
    }
}
