//! `stdout`: one line per event, as g3's stdout driver writes it: the time, the level, each
//! `key: value,` sorted by key (values as they are, unquoted), then the message (`()` when
//! there is none, as for task logs).

use std::fmt::Write as _;
use std::io::Write as _;

use g3proxy_shared::types::rfc3339_micros;

use super::{Rendered, Value, Write};

/// The lines of the batch not written yet.
#[derive(Default)]
pub struct Stdout {
    lines: String,
    count: usize,
}

impl Write for Stdout {
    fn write(&mut self, event: Rendered<'_>) -> usize {
        let mut fields: Vec<_> = event.fields().collect();
        fields.sort_by_key(|(key, _)| *key);
        let mut line = rfc3339_micros(std::time::SystemTime::now());
        line.push_str(" INFO");
        for (key, value) in fields {
            let _ = match value {
                Value::Str(text) => write!(line, " {key}: {text},"),
                Value::Int(n) => write!(line, " {key}: {n},"),
            };
        }
        line.push(' ');
        line.push_str(match event.message() {
            "" => "()",
            message => message,
        });
        // One event, one line: a line break inside a value would start a false one.
        let start = self.lines.len();
        self.lines.extend(
            line.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
        self.lines.push('\n');
        self.count += 1;
        self.lines.len() - start
    }

    fn flush(&mut self) -> usize {
        let written = std::io::stdout().lock().write_all(self.lines.as_bytes());
        self.lines.clear();
        let count = std::mem::take(&mut self.count);
        if written.is_ok() { count } else { 0 }
    }
}
