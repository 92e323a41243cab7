//! The range of every numeric config key that has one, as `deserialize_with` functions, so a
//! value out of range is a load error at its own line (file, YAML path, line) instead of a
//! panic, a thread bomb or a proxy that times out every request at once.
//!
//! | function            | keys                                                  | range           |
//! |---------------------|-------------------------------------------------------|-----------------|
//! | (any duration)      | every duration                                        | 0 ..= 10 years  |
//! | `timeout`           | `*_timeout`, `*_interval`: waits that must end        | 1ms ..= 10 years|
//! | `header_size`       | `req_header_max_size`, `rsp_header_max_size`, `http_connect_rsp_header_max_size` | 1 KiB ..= 16 MiB|
//! | `buffer_size`       | `tcp_copy_buffer_size`                                | 4 KiB ..= 1 MiB |
//! | `stack_size`        | `thread_stack_size`                                   | 64 KiB ..= 1 GiB|
//! | `threads`           | `runtime.thread_number`, `worker.thread_number[_per_runtime]` | 1 ..= 1024 |
//! | `io_events`         | `max_io_events_per_tick`                              | 1 ..= 1000000   |
//! | `idle_count`        | `task_idle_max_count`                                 | 1 ..= 1000000   |
//! | `generations`       | `runtime.max_draining_generations`                    | 1 ..= 1024      |
//! | `tries`             | c-ares `each_tries`                                   | 1 ..= 100       |
//! | `retries`           | `tcp_connect.max_retry`                               | 0 ..= 100       |
//! | `instances`         | `listen.instance`                                     | 1 ..= 256       |
//! | `pipeline_size`     | `pipeline_size`                                       | 1 ..= 1000000   |

use std::fmt::Display;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

use super::humanize::{HumanDuration, HumanSize, MAX_DURATION};

fn within<T: PartialOrd + Display, E: Error>(value: T, min: T, max: T) -> Result<T, E> {
    if value < min || value > max {
        return Err(E::custom(format!(
            "{value} is out of range: allowed is {min} to {max}"
        )));
    }
    Ok(value)
}

macro_rules! ranges {
    ($($(#[$doc:meta])* $name:ident / $optional:ident: $ty:ty = $min:expr, $max:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
            within(<$ty>::deserialize(deserializer)?, $min, $max)
        }

        /// The same, for a key that may be left out (`#[serde(default)]` gives `None`).
        pub fn $optional<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<$ty>, D::Error> {
            $name(deserializer).map(Some)
        }
    )*};
}

ranges! {
    /// A wait that must end: zero would fail every task at once.
    timeout / optional_timeout: HumanDuration =
        HumanDuration(Duration::from_millis(1)), HumanDuration(MAX_DURATION);
    header_size / optional_header_size: HumanSize = HumanSize(1 << 10), HumanSize(16 << 20);
    buffer_size / optional_buffer_size: HumanSize = HumanSize(4 << 10), HumanSize(1 << 20);
    stack_size / optional_stack_size: HumanSize = HumanSize(64 << 10), HumanSize(1 << 30);
    threads / optional_threads: usize = 1, 1024;
    io_events / optional_io_events: usize = 1, 1_000_000;
    idle_count / optional_idle_count: u32 = 1, 1_000_000;
    generations / optional_generations: usize = 1, 1024;
    tries / optional_tries: u32 = 1, 100;
    retries / optional_retries: usize = 0, 100;
    instances / optional_instances: usize = 1, 256;
    pipeline_size / optional_pipeline_size: usize = 1, 1_000_000;
}

#[cfg(test)]
mod tests {
    use serde::de::IntoDeserializer;
    use serde::de::value::Error as ValueError;

    use super::*;

    #[test]
    fn values_outside_their_range_are_refused() {
        let threads_of = |n: u64| threads(IntoDeserializer::<ValueError>::into_deserializer(n));
        assert_eq!(threads_of(8).unwrap(), 8);
        assert!(threads_of(0).is_err());
        assert_eq!(
            threads_of(100_000).unwrap_err().to_string(),
            "100000 is out of range: allowed is 1 to 1024"
        );
        let timeout_of =
            |text: &str| timeout(IntoDeserializer::<ValueError>::into_deserializer(text));
        assert!(timeout_of("0s").is_err());
        assert!(timeout_of("1ms").is_ok());
        let size_of = |n: u64| header_size(IntoDeserializer::<ValueError>::into_deserializer(n));
        assert!(size_of(0).is_err());
        assert!(size_of(65536).is_ok());
    }
}
