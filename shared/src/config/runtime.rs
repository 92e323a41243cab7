//! The `runtime` section (g3proxy's graceful-quit timers and main runtime threads) and the
//! `worker` section (how many worker processes a generation has and where they run).
//!
//! Keys of ours, beyond g3proxy's: `runtime.generation_ready_timeout` (how long a new generation
//! may take to report READY before it is rolled back) and `runtime.max_draining_generations`
//! (past it, the oldest draining generation is closed).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::types::{HumanDuration, HumanSize};

fn default_server_offline_delay() -> HumanDuration {
    HumanDuration::secs(4)
}
fn default_task_wait_delay() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_task_wait_timeout() -> HumanDuration {
    HumanDuration::secs(10 * 3600)
}
fn default_task_quit_timeout() -> HumanDuration {
    HumanDuration::secs(30 * 60)
}
fn default_generation_ready_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_max_draining_generations() -> usize {
    8
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads of each worker's runtime when there is no `worker` section.
    #[serde(default, deserialize_with = "crate::types::bounds::optional_threads")]
    pub thread_number: Option<usize>,
    #[serde(default)]
    pub thread_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::types::bounds::optional_stack_size"
    )]
    pub thread_stack_size: Option<HumanSize>,
    #[serde(default, deserialize_with = "crate::types::bounds::optional_io_events")]
    pub max_io_events_per_tick: Option<usize>,
    /// How long workers left by a supervisor that went `offline` keep accepting while waiting
    /// for a successor.
    #[serde(default = "default_server_offline_delay")]
    pub server_offline_delay: HumanDuration,
    #[serde(default = "default_task_wait_delay")]
    pub task_wait_delay: HumanDuration,
    /// The drain deadline of an old generation.
    #[serde(
        default = "default_task_wait_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub task_wait_timeout: HumanDuration,
    #[serde(default = "default_task_quit_timeout")]
    pub task_quit_timeout: HumanDuration,
    #[serde(
        default = "default_generation_ready_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    pub generation_ready_timeout: HumanDuration,
    #[serde(
        default = "default_max_draining_generations",
        deserialize_with = "crate::types::bounds::generations"
    )]
    pub max_draining_generations: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            thread_number: None,
            thread_name: None,
            thread_stack_size: None,
            max_io_events_per_tick: None,
            server_offline_delay: default_server_offline_delay(),
            task_wait_delay: default_task_wait_delay(),
            task_wait_timeout: default_task_wait_timeout(),
            task_quit_timeout: default_task_quit_timeout(),
            generation_ready_timeout: default_generation_ready_timeout(),
            max_draining_generations: default_max_draining_generations(),
        }
    }
}

impl RuntimeConfig {
    pub fn drain_timeout(&self) -> Duration {
        self.task_wait_timeout.0
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Worker processes per generation (default: one per CPU).
    #[serde(
        default,
        alias = "threads_total",
        deserialize_with = "crate::types::bounds::optional_threads"
    )]
    pub thread_number: Option<usize>,
    /// Threads of each worker process's runtime (default 1).
    #[serde(default, deserialize_with = "crate::types::bounds::optional_threads")]
    pub thread_number_per_runtime: Option<usize>,
    #[serde(
        default,
        deserialize_with = "crate::types::bounds::optional_stack_size"
    )]
    pub thread_stack_size: Option<HumanSize>,
    #[serde(default)]
    pub sched_affinity: SchedAffinity,
    #[serde(default, deserialize_with = "crate::types::bounds::optional_io_events")]
    pub max_io_events_per_tick: Option<usize>,
}

/// `sched_affinity`: off, on (worker N on CPU N), or an explicit map worker id → CPU set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SchedAffinity {
    #[default]
    Off,
    Sequential,
    Explicit(BTreeMap<usize, Vec<usize>>),
}

impl SchedAffinity {
    /// The CPUs worker `index` is pinned to, if any.
    pub fn cpus_for(&self, index: usize, cpu_count: usize) -> Option<Vec<usize>> {
        match self {
            SchedAffinity::Off => None,
            SchedAffinity::Sequential => Some(vec![index % cpu_count.max(1)]),
            SchedAffinity::Explicit(map) => map.get(&index).cloned(),
        }
    }
}

/// Reads a CPU set: `3`, `"0-3,8"` or a list of either.
fn parse_cpu_set(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let invalid = || format!("invalid cpu set: {text:?}");
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to): (usize, usize) = (
                    from.trim().parse().map_err(|_| invalid())?,
                    to.trim().parse().map_err(|_| invalid())?,
                );
                if from > to {
                    return Err(invalid());
                }
                cpus.extend(from..=to);
            }
            None => cpus.push(part.parse().map_err(|_| invalid())?),
        }
    }
    Ok(cpus)
}

struct CpuSet(Vec<usize>);

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CpuSetVisitor;
        impl<'de> Visitor<'de> for CpuSetVisitor {
            type Value = Vec<usize>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cpu id, a cpu set such as 0-3,8, or a list of them")
            }
            fn visit_u64<E: de::Error>(self, cpu: u64) -> Result<Vec<usize>, E> {
                Ok(vec![cpu as usize])
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<usize>, E> {
                parse_cpu_set(text).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<usize>, A::Error> {
                let mut cpus = Vec::new();
                while let Some(CpuSet(more)) = seq.next_element()? {
                    cpus.extend(more);
                }
                Ok(cpus)
            }
        }
        deserializer.deserialize_any(CpuSetVisitor).map(CpuSet)
    }
}

impl<'de> Deserialize<'de> for SchedAffinity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AffinityVisitor;
        impl<'de> Visitor<'de> for AffinityVisitor {
            type Value = SchedAffinity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bool, or a map of worker id to cpu set")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<SchedAffinity, E> {
                Ok(if on {
                    SchedAffinity::Sequential
                } else {
                    SchedAffinity::Off
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<SchedAffinity, E> {
                Ok(SchedAffinity::Off)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SchedAffinity, A::Error> {
                let mut explicit = BTreeMap::new();
                while let Some(worker) = map.next_key::<String>()? {
                    let worker: usize = worker
                        .parse()
                        .map_err(|_| de::Error::custom(format!("invalid worker id {worker:?}")))?;
                    let CpuSet(cpus) = map.next_value()?;
                    explicit.insert(worker, cpus);
                }
                Ok(SchedAffinity::Explicit(explicit))
            }
        }
        deserializer.deserialize_any(AffinityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sets() {
        assert_eq!(parse_cpu_set("0-3,8"), Ok(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_set("5"), Ok(vec![5]));
        assert!(parse_cpu_set("3-1").is_err());
        assert!(parse_cpu_set("x").is_err());
    }
}
