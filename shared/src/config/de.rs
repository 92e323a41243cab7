//! A serde `Deserializer` over the marked YAML tree, so module configs are plain derived
//! structs while every error still names the file, the YAML path and the line.
//!
//! g3 conventions applied here, once, for every struct:
//! - keys of struct-like mappings are normalized (`user-group` = `user_group`, `HttpProxy` =
//!   `httpproxy`); free maps (`HashMap`, `BTreeMap`) keep their keys as written;
//! - enum values are normalized the same way;
//! - a single value stands for a one-item list where a list is expected;
//! - plain scalars are typed on demand (`"200"` and `200` both fill a number).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::ConfigError;
use super::yaml::{Node, Value, normalize_key};

#[derive(Debug)]
pub struct DeError {
    message: String,
    position: Option<(Arc<str>, String, usize)>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError {
            message: message.to_string(),
            position: None,
        }
    }
}

impl DeError {
    /// Pins the error on the innermost node that saw it first.
    fn located(mut self, node: &Node, path: &str) -> Self {
        if self.position.is_none() {
            self.position = Some((node.file.clone(), path.to_string(), node.line));
        }
        self
    }

    fn into_config_error(self) -> ConfigError {
        let (file, path, line) = self
            .position
            .unwrap_or_else(|| ("".into(), String::new(), 0));
        ConfigError::at(&file, &path, line, self.message)
    }
}

/// `deserialize_with` for a key of g3's that this build does not honour yet: refused at its
/// line, so a config never seems to ask for something that silently does not happen.
pub(crate) fn not_yet<'de, D: de::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
    Err(de::Error::custom(
        "this key is not supported by this build yet; remove it or wait for the release that enforces it",
    ))
}

/// Decodes `node`, found at YAML path `path`, into `T`.
/// Asked for as a newtype struct of this name, a value is given to the visitor as
/// `deserialize_any` would, except that the keys of a mapping are left as written: they name
/// modules (escapers in route rules), which are case- and dash-sensitive, not config keys.
pub(crate) const NAMES_AS_KEYS: &str = "$g3proxy::names_as_keys";

pub fn decode<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, ConfigError> {
    T::deserialize(NodeDeserializer::new(node, path.to_string()))
        .map_err(|e| e.located(node, path).into_config_error())
}

pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
    /// Set on the mapping whose leftover keys a caller wants: keys its struct ignored.
    collect_ignored: Option<&'a RefCell<Vec<String>>>,
    /// Set on a value of such a mapping: where to note its key if the struct ignores it.
    note_if_ignored: Option<(&'a RefCell<Vec<String>>, String)>,
}

/// Decodes one module entry as several structs that share its keys: the fields every type
/// of the module has, groups of keys some types share (an HTTP session's limits), and the
/// type's own. No part may deny unknown fields; a key that every part ignored is the error
/// `deny_unknown_fields` would have given, at that key's line ([`Parts::finish`]).
pub struct Parts<'a> {
    node: &'a Node,
    path: &'a str,
    /// Keys every part decoded so far ignored; `None` before the first part.
    ignored_by_all: Option<Vec<String>>,
}

impl<'a> Parts<'a> {
    pub fn new(node: &'a Node, path: &'a str) -> Self {
        Parts {
            node,
            path,
            ignored_by_all: None,
        }
    }

    pub fn decode<T: DeserializeOwned>(&mut self) -> Result<T, ConfigError> {
        let ignored = RefCell::new(Vec::new());
        let mut deserializer = NodeDeserializer::new(self.node, self.path.to_string());
        deserializer.collect_ignored = Some(&ignored);
        let value = T::deserialize(deserializer)
            .map_err(|e| e.located(self.node, self.path).into_config_error())?;
        let ignored = ignored.into_inner();
        self.ignored_by_all = Some(match self.ignored_by_all.take() {
            None => ignored,
            Some(before) => before.into_iter().filter(|k| ignored.contains(k)).collect(),
        });
        Ok(value)
    }

    /// Refuses the first key no part took.
    pub fn finish(self) -> Result<(), ConfigError> {
        let Some(key) = self.ignored_by_all.into_iter().flatten().next() else {
            return Ok(());
        };
        let node = self.node;
        let key_node = match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _)| k)
                .find(|k| k.as_str().is_some_and(|k| normalize_key(k) == key))
                .unwrap_or(node),
            _ => node,
        };
        let shown = if self.path.is_empty() {
            key.clone()
        } else {
            format!("{}.{key}", self.path)
        };
        Err(ConfigError::at(
            &key_node.file,
            &shown,
            key_node.line,
            format!("unknown field `{key}`"),
        ))
    }
}

impl<'a> NodeDeserializer<'a> {
    fn new(node: &'a Node, path: String) -> Self {
        NodeDeserializer {
            node,
            path,
            collect_ignored: None,
            note_if_ignored: None,
        }
    }

    fn scalar(&self) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(de::Error::custom(format!(
                "expected a scalar value, found a {}",
                self.node.kind()
            ))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        let text = self.scalar()?;
        text.trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("invalid {what}: {text:?}")))
    }

    fn seq_access(&self, items: &'a [Node]) -> SeqAccess<'a> {
        SeqAccess {
            items: items.iter().enumerate(),
            path: self.path.clone(),
        }
    }

    fn map_access(&self, entries: &'a [(Node, Node)], normalize: bool) -> MapAccess<'a> {
        MapAccess {
            entries: entries.iter(),
            pending: None,
            path: self.path.clone(),
            normalize,
            collect_ignored: self.collect_ignored,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

macro_rules! deserialize_number {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.parse::<$ty>(stringify!($ty))?)
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for NodeDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar { text, plain: true } => {
                // YAML 1.2 core schema booleans; `yes`/`on` stay strings unless a bool is asked for.
                if let Some(b) = match text.as_str() {
                    "true" | "True" | "TRUE" => Some(true),
                    "false" | "False" | "FALSE" => Some(false),
                    _ => None,
                } {
                    visitor.visit_bool(b)
                } else if let Ok(n) = text.parse::<u64>() {
                    visitor.visit_u64(n)
                } else if let Ok(n) = text.parse::<i64>() {
                    visitor.visit_i64(n)
                } else if let Some(f) = text
                    .parse::<f64>()
                    .ok()
                    .filter(|_| text.bytes().any(|b| b.is_ascii_digit()))
                {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(self.seq_access(items)),
            Value::Map(entries) => visitor.visit_map(self.map_access(entries, true)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = self.scalar()?;
        let value =
            parse_bool(text).ok_or_else(|| de::Error::custom(format!("invalid bool: {text:?}")))?;
        visitor.visit_bool(value)
    }

    deserialize_number! {
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.scalar()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(de::Error::custom("expected no value")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == NAMES_AS_KEYS {
            return match &self.node.value {
                Value::Map(entries) => visitor.visit_map(self.map_access(entries, false)),
                _ => self.deserialize_any(visitor),
            };
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(self.seq_access(items)),
            Value::Null => visitor.visit_seq(self.seq_access(&[])),
            // One value where a list is expected is a list of one.
            _ => visitor.visit_seq(self.seq_access(std::slice::from_ref(self.node))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(self.map_access(entries, false)),
            Value::Null => visitor.visit_map(self.map_access(&[], false)),
            _ => Err(de::Error::custom(format!(
                "expected a mapping, found a {}",
                self.node.kind()
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(self.map_access(entries, true)),
            Value::Null => visitor.visit_map(self.map_access(&[], true)),
            _ => Err(de::Error::custom(format!(
                "expected a mapping, found a {}",
                self.node.kind()
            ))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => visitor.visit_enum(EnumAccess {
                variant: normalize_key(text),
                content: None,
                path: self.path,
            }),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let variant = normalize_key(key.as_str().unwrap_or_default());
                let path = format!("{}.{variant}", self.path);
                visitor.visit_enum(EnumAccess {
                    variant,
                    content: Some(value),
                    path,
                })
            }
            _ => Err(de::Error::custom(format!(
                "expected a name or a single-key mapping, found a {}",
                self.node.kind()
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_string(normalize_key(self.scalar()?))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some((ignored, key)) = self.note_if_ignored {
            ignored.borrow_mut().push(key);
        }
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: String,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{index}]", self.path);
        seed.deserialize(NodeDeserializer::new(node, path.clone()))
            .map(Some)
            .map_err(|e| e.located(node, &path))
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    pending: Option<(&'a Node, String, String)>,
    path: String,
    normalize: bool,
    collect_ignored: Option<&'a RefCell<Vec<String>>>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let text = match &key.value {
            Value::Scalar { text, .. } => text.clone(),
            _ => {
                return Err(
                    <DeError as de::Error>::custom("mapping keys must be scalars")
                        .located(key, &self.path),
                );
            }
        };
        let name = if self.normalize {
            normalize_key(&text)
        } else {
            text
        };
        let path = if self.path.is_empty() {
            name.clone()
        } else {
            format!("{}.{name}", self.path)
        };
        let parsed = seed
            .deserialize(name.clone().into_deserializer())
            .map_err(|e: DeError| e.located(key, &path));
        self.pending = Some((value, path, name));
        parsed.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path, key) = self
            .pending
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without key"))?;
        let mut deserializer = NodeDeserializer::new(node, path.clone());
        deserializer.note_if_ignored = self.collect_ignored.map(|ignored| (ignored, key));
        seed.deserialize(deserializer)
            .map_err(|e| e.located(node, &path))
    }
}

struct EnumAccess<'a> {
    variant: String,
    content: Option<&'a Node>,
    path: String,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let variant = seed.deserialize(self.variant.clone().into_deserializer())?;
        Ok((variant, self))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for EnumAccess<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None => Ok(()),
            Some(node) if node.value == Value::Null => Ok(()),
            Some(_) => Err(de::Error::custom(format!(
                "{} takes no value",
                self.variant
            ))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let node = self
            .content
            .ok_or_else(|| de::Error::custom(format!("{} needs a value", self.variant)))?;
        seed.deserialize(NodeDeserializer::new(node, self.path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let node = self
            .content
            .ok_or_else(|| de::Error::custom(format!("{} needs a value", self.variant)))?;
        de::Deserializer::deserialize_seq(NodeDeserializer::new(node, self.path), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self
            .content
            .ok_or_else(|| de::Error::custom(format!("{} needs a value", self.variant)))?;
        de::Deserializer::deserialize_struct(
            NodeDeserializer::new(node, self.path),
            "",
            fields,
            visitor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse_documents;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[serde(default)]
        user_group: Option<String>,
        #[serde(default)]
        ports: Vec<u16>,
        #[serde(default)]
        strategy: Option<Strategy>,
        #[serde(default)]
        tags: BTreeMap<String, String>,
        #[serde(default)]
        enabled: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Strategy {
        #[serde(rename = "ipv4first")]
        Ipv4First,
        #[serde(rename = "ipv6only")]
        Ipv6Only,
    }

    fn check(text: &str) -> Result<Sample, String> {
        let docs = parse_documents(text, "s.yml".into()).unwrap();
        decode::<Sample>(&docs[0], "server[0]").map_err(|e| e.to_string())
    }

    #[test]
    fn g3_spellings_decode() {
        let got = check("Name: a\nUser-Group: g\nports: 80\nstrategy: IPv4First\ntags: {Mixed-Case: x}\nenabled: \"true\"\n").unwrap();
        assert_eq!(got.user_group.as_deref(), Some("g"));
        assert_eq!(got.ports, vec![80]);
        assert_eq!(got.strategy, Some(Strategy::Ipv4First));
        assert_eq!(
            got.tags.keys().next().map(String::as_str),
            Some("Mixed-Case")
        );
        assert!(got.enabled);
    }

    #[test]
    fn errors_name_file_path_and_line() {
        let cases = [
            (
                "name: a\nbogus: 1\n",
                "s.yml: server[0].bogus (line 2): unknown field `bogus`",
            ),
            (
                "name: a\nports:\n  - 80\n  - 70000\n",
                "s.yml: server[0].ports[1] (line 4): invalid u16: \"70000\"",
            ),
            (
                "name: a\nstrategy: ipv5\n",
                "s.yml: server[0].strategy (line 2): unknown variant `ipv5`",
            ),
            (
                "ports: [1]\n",
                "s.yml: server[0] (line 1): missing field `name`",
            ),
            (
                "name: [1]\n",
                "s.yml: server[0].name (line 1): expected a scalar value, found a sequence",
            ),
        ];
        for (text, want) in cases {
            let got = check(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }
}
