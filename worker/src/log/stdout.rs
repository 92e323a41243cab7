//! `stdout`: one line per event, as g3's stdout driver writes it: the time, the level, each
//! `key: value,` sorted by key (values as they are, unquoted), then the message (`()` when
//! there is none, as for task logs). In a container, stdout is where task logs go to be
//! shipped, so a line costs no allocation, and the sort is done once per set of keys.

use std::fmt::Write as _;
use std::io::Write as _;

use g3proxy_shared::types::Rfc3339Micros;

use super::{Rendered, Value, Write, push_decimal};

/// The lines of the batch not written yet, and the sort order of the last event's keys.
#[derive(Default)]
pub struct Stdout {
    lines: String,
    count: usize,
    /// The event being written: its values as text, one after another, and where each
    /// stands, in the event's order (reused from one event to the next).
    values: String,
    spans: Vec<(usize, usize)>,
    /// The keys of the last event, as it gave them.
    keys: Vec<&'static str>,
    /// Their positions, sorted by key: events of one kind come with the same keys in the
    /// same order, so this is reused from one to the next.
    order: Vec<usize>,
}

impl Stdout {
    /// The sort order for `event`'s keys, worked out again only when they changed.
    fn sort(&mut self, event: &Rendered<'_>) {
        if event
            .fields()
            .map(|(key, _)| key)
            .eq(self.keys.iter().copied())
        {
            return;
        }
        self.keys.clear();
        self.keys.extend(event.fields().map(|(key, _)| key));
        self.order.clear();
        self.order.extend(0..self.keys.len());
        let keys = &self.keys;
        self.order.sort_by_key(|&index| keys[index]);
    }
}

impl Write for Stdout {
    fn write(&mut self, event: Rendered<'_>) -> usize {
        self.sort(&event);
        self.values.clear();
        self.spans.clear();
        for (_, value) in event.fields() {
            let start = self.values.len();
            match value {
                Value::Str(text) => push_on_one_line(&mut self.values, text),
                Value::Int(n) => push_decimal(&mut self.values, n),
            }
            self.spans.push((start, self.values.len()));
        }
        let start = self.lines.len();
        let line = &mut self.lines;
        let _ = write!(line, "{} INFO", Rfc3339Micros(std::time::SystemTime::now()));
        for &index in &self.order {
            let (start, end) = self.spans[index];
            line.push(' ');
            line.push_str(self.keys[index]);
            line.push_str(": ");
            line.push_str(&self.values[start..end]);
            line.push(',');
        }
        line.push(' ');
        match event.message() {
            "" => line.push_str("()"),
            message => push_on_one_line(line, message),
        }
        line.push('\n');
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

/// `text` with its line breaks made spaces: one event, one line, and a line break inside a
/// value would start a false one.
fn push_on_one_line(line: &mut String, text: &str) {
    if text.contains(['\n', '\r']) {
        line.extend(
            text.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    } else {
        line.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{Event, Scratch};

    fn line_of(stdout: &mut Stdout, event: &Event) -> String {
        let mut scratch = Scratch::default();
        let start = stdout.lines.len();
        stdout.write(event.render(&mut scratch));
        stdout.lines[start..].to_string()
    }

    #[test]
    fn lines_sort_their_keys_whatever_the_last_event_had() {
        let mut stdout = Stdout::default();
        let mut first = Event::new();
        first.text("b", "two\nlines").int("a", 1).text("c", "x");
        let mut second = Event::new();
        second.int("z", 26).text("m", "middle");
        for _ in 0..2 {
            for (event, fields) in [
                (&first, " INFO a: 1, b: two lines, c: x, ()\n"),
                (&second, " INFO m: middle, z: 26, ()\n"),
            ] {
                let line = line_of(&mut stdout, event);
                // `2026-11-30T10:20:30.123456Z`, then the fields.
                assert_eq!(&line[27..], fields, "{line}");
            }
        }
        let mut with_message = Event::new();
        with_message.message.push_str("failed\r\nto connect");
        with_message.int("a", 1);
        assert!(line_of(&mut stdout, &with_message).ends_with(" INFO a: 1, failed  to connect\n"));
        assert_eq!(stdout.count, 5);
    }
}
