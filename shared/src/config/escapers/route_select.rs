//! Config of `type: route_select`: the next escaper picked among `next_nodes` (names, each
//! optionally weighted: `name` or `{name, weight}`) by `next_pick_policy` (ketama by default,
//! on the client, the user and the target host, as g3 keys it).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::EscaperKind;
use crate::config::de::NAMES_AS_KEYS;
use crate::types::PickPolicy;

impl EscaperKind for RouteSelectConfig {
    fn next_escapers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.next_nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn check(&self) -> Result<(), String> {
        match self.next_nodes.is_empty() {
            true => Err("next_nodes is empty: name at least one escaper".into()),
            false => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouteSelectConfig {
    #[serde(alias = "next")]
    pub next_nodes: Vec<WeightedName>,
    #[serde(default = "default_policy")]
    pub next_pick_policy: PickPolicy,
}

fn default_policy() -> PickPolicy {
    PickPolicy::Ketama
}

/// An escaper name with a weight (1 when not given).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedName {
    pub name: String,
    pub weight: f64,
}

impl<'de> Deserialize<'de> for WeightedName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = WeightedName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an escaper name, or {name, weight}")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<WeightedName, E> {
                Ok(WeightedName {
                    name: name.to_string(),
                    weight: 1.0,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WeightedName, A::Error> {
                let (mut name, mut weight) = (None, 1.0);
                while let Some(key) = map.next_key::<String>()? {
                    match crate::config::normalize_key(&key).as_str() {
                        "name" | "next" | "escaper" => name = Some(map.next_value::<String>()?),
                        "weight" => weight = map.next_value::<f64>()?,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key {other}: a node has name and weight"
                            )));
                        }
                    }
                }
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(de::Error::custom("a weight is a positive number"));
                }
                let name = name.ok_or_else(|| de::Error::custom("a node without a name"))?;
                Ok(WeightedName { name, weight })
            }
        }
        // Names stay as written (escaper names are case- and dash-sensitive).
        deserializer.deserialize_newtype_struct(NAMES_AS_KEYS, NameVisitor)
    }
}
