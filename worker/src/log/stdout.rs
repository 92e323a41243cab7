//! `stdout`: one line per event, as g3's stdout driver writes it: the time, the level, then
//! `key: value` pairs sorted by key.

use std::io::Write as _;

use g3proxy_shared::types::rfc3339_micros;

use super::{Event, Value, Write, key_values};

pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, event: &Event) -> Option<usize> {
        let mut fields: Vec<_> = event.fields().collect();
        if !event.message.is_empty() {
            fields.push(("msg", Value::Str(&event.message)));
        }
        fields.sort_by_key(|(key, _)| *key);
        let mut line = rfc3339_micros(std::time::SystemTime::now());
        line.push_str(" INFO ");
        key_values(fields, ": ", &mut line);
        line.push('\n');
        // A closed stdout loses the line, as it would any other.
        let written = std::io::stdout().lock().write_all(line.as_bytes());
        written.ok().map(|()| line.len())
    }
}
