//! A YAML tree that remembers where each node came from (file and line), built from
//! `saphyr-parser` events. Config errors point at these marks.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};

use super::error::ConfigError;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub file: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing at all.
    Null,
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping, comparing normalized keys.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str().is_some_and(|k| normalize_key(k) == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "scalar",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }
}

/// g3's keys and enum values are case-insensitive, with `-` and `_` the same.
pub fn normalize_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

enum Building {
    Seq(Vec<Node>, usize, usize),
    Map(Vec<(Node, Node)>, Option<Node>, usize, usize),
}

struct TreeBuilder {
    file: Arc<str>,
    stack: Vec<Building>,
    documents: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<String>,
}

impl TreeBuilder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Building::Seq(items, ..)) => items.push(node),
            Some(Building::Map(entries, pending_key, ..)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for TreeBuilder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        let line = span.start.line();
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let value = if plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: Cow::into_owned(text),
                        plain,
                    }
                };
                let node = Node {
                    value,
                    line,
                    file: self.file.clone(),
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Building::Seq(Vec::new(), anchor, line))
            }
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Building::Map(Vec::new(), None, anchor, line))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, line) = match self.stack.pop() {
                    Some(Building::Seq(items, anchor, line)) => (Value::Seq(items), anchor, line),
                    Some(Building::Map(entries, _, anchor, line)) => {
                        (Value::Map(entries), anchor, line)
                    }
                    None => return,
                };
                let node = Node {
                    value,
                    line,
                    file: self.file.clone(),
                };
                self.push_node(node, anchor);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some(mut node) => {
                    node.line = line;
                    self.push_node(node, 0);
                }
                None => self.error = Some(format!("line {line}: unknown alias")),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
    }
}

/// Parses every document of a YAML stream.
pub fn parse_documents(text: &str, file: Arc<str>) -> Result<Vec<Node>, ConfigError> {
    let mut builder = TreeBuilder {
        file: file.clone(),
        stack: Vec::new(),
        documents: Vec::new(),
        anchors: HashMap::new(),
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, true) {
        let line = error.marker().line();
        return Err(ConfigError::at(
            &file,
            "",
            line,
            format!("invalid yaml: {}", error.info()),
        ));
    }
    if let Some(message) = builder.error {
        return Err(ConfigError::at(&file, "", 0, message));
    }
    Ok(builder.documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_lines_and_aliases() {
        let text = "a: 1\nb:\n  - x\n  - &y {k: 'v'}\nc: *y\nd:\n";
        let docs = parse_documents(text, "t.yml".into()).unwrap();
        let root = &docs[0];
        assert_eq!(root.get("a").unwrap().line, 1);
        let Value::Seq(items) = &root.get("b").unwrap().value else {
            panic!()
        };
        assert_eq!(items[1].line, 4);
        assert_eq!(
            root.get("c").unwrap().get("k").unwrap().value,
            Value::Scalar {
                text: "v".into(),
                plain: false
            }
        );
        assert_eq!(root.get("d").unwrap().value, Value::Null);
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let error = parse_documents("a: 1\nb: [1, 2\n", "bad.yml".into()).unwrap_err();
        assert!(error.to_string().starts_with("bad.yml"), "{error}");
        assert!(error.line >= 2, "{error}");
    }
}
