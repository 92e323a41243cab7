//! `type: route_query`: asks an agent which escaper a task takes, in g3proxy's protocol: a
//! MessagePack map per UDP datagram, `{id: 16 bytes, user, host[, client_ip]}`, answered
//! with `{id, nodes: name | [name | {name, weight}], ttl}`. Answers are cached per user, host
//! (and client, when it is sent): fresh for their ttl (at most `maximum_cache_ttl`; none or 0
//! is `protective_cache_ttl`), then used while asked again for `cache_vanish_wait`. A task
//! waits `cache_request_timeout` for an answer; without one, or when the answer names no
//! escaper of `query_allowed_next`, it takes `fallback_node`. A query the agent leaves
//! unanswered for `query_wait_timeout` is cached as empty for the protective ttl. The socket
//! and the cache are `agent.rs`'s, shared with route_geoip.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;

use g3proxy_proto::msgpack::Value;
use g3proxy_shared::config::escapers::RouteQueryConfig;

use super::agent::{self, Agent, Answered, Timings};
use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::pick::Picker;

pub struct RouteQueryEscaper {
    allowed: HashMap<String, Arc<Escaper>>,
    fallback: Arc<Escaper>,
    pass_client_ip: bool,
    agent: Arc<Agent<QueryProtocol>>,
}

/// What is asked: the task's user (empty without one), target host and, when the config
/// says so, client.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    user: String,
    host: String,
    client: Option<IpAddr>,
}

/// g3's route query protocol: a question under a random id; the answer's nodes, kept to
/// the allowed escapers, to pick from.
struct QueryProtocol {
    allowed: Vec<String>,
    pick_policy: g3proxy_shared::types::PickPolicy,
}

impl agent::Protocol for QueryProtocol {
    type Question = Question;
    type Answer = Arc<Picker<String>>;
    type Tag = [u8; 16];

    fn query(&self, question: &Question) -> (Value, [u8; 16]) {
        let id = new_id();
        let mut entries = vec![
            (Value::Str("id".into()), Value::Bin(id.to_vec())),
            (Value::Str("user".into()), Value::Str(question.user.clone())),
            (Value::Str("host".into()), Value::Str(question.host.clone())),
        ];
        if let Some(client) = question.client {
            entries.push((
                Value::Str("client_ip".into()),
                Value::Str(client.to_string()),
            ));
        }
        (Value::Map(entries), id)
    }

    fn answer(&self, value: &Value) -> Option<Answered<Self>> {
        let id = value.get("id").and_then(answer_id)?;
        let named: Vec<(String, f64)> = match value.get("nodes") {
            Some(Value::Array(items)) => items.iter().filter_map(weighted_name).collect(),
            Some(single) => weighted_name(single).into_iter().collect(),
            None => Vec::new(),
        };
        let allowed: Vec<(String, f64)> = named
            .into_iter()
            .filter(|(name, weight)| self.allowed.contains(name) && *weight > 0.0)
            .collect();
        let nodes = (!allowed.is_empty()).then(|| Arc::new(Picker::new(allowed, self.pick_policy)));
        Some(Answered {
            tag: id,
            answer: nodes,
            ttl: value.get("ttl").and_then(Value::as_u64),
        })
    }
}

impl RouteQueryEscaper {
    pub fn build(config: &RouteQueryConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let allowed = config
            .query_allowed_next
            .iter()
            .map(|name| (name.clone(), deps.escaper(name)))
            .collect();
        let protocol = QueryProtocol {
            allowed: config.query_allowed_next.clone(),
            pick_policy: config.cache_pick_policy,
        };
        let timings = Timings {
            request_timeout: config.cache_request_timeout.0,
            wait_timeout: config.query_wait_timeout.0,
            default_ttl: config.protective_cache_ttl,
            maximum_ttl: config.maximum_cache_ttl,
            vanish_wait: config.cache_vanish_wait.0,
        };
        Ok(RouteQueryEscaper {
            allowed,
            fallback: deps.escaper(&config.fallback_node),
            pass_client_ip: config.query_pass_client_ip,
            agent: Agent::new(protocol, config.query_peer_addr, timings)?,
        })
    }
}

impl EscaperOps for RouteQueryEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let question = Question {
            user: leg.user_name().unwrap_or_default().to_string(),
            host: leg.target.host.to_string(),
            client: self.pass_client_ip.then_some(leg.client_ip()),
        };
        let nodes = self.agent.ask(&question).await;
        let picked = nodes.and_then(|nodes| {
            let name = nodes.pick(leg.client_ip().to_string().as_bytes());
            self.allowed.get(name)
        });
        Ok(Some(picked.unwrap_or(&self.fallback)))
    }
}

/// An answer's `id`: 16 bytes, or a UUID written as text.
fn answer_id(value: &Value) -> Option<[u8; 16]> {
    match value {
        Value::Bin(bytes) => bytes.as_slice().try_into().ok(),
        Value::Str(text) => {
            let hex: String = text.chars().filter(|c| *c != '-').collect();
            let mut id = [0u8; 16];
            for (i, byte) in id.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            (hex.len() == 32).then_some(id)
        }
        _ => None,
    }
}

/// A node of an answer: `name`, or `{name, weight}`.
fn weighted_name(value: &Value) -> Option<(String, f64)> {
    match value {
        Value::Str(name) => Some((name.clone(), 1.0)),
        Value::Map(_) => {
            let name = value.get("name")?.as_str()?.to_string();
            let weight = value.get("weight").and_then(Value::as_f64).unwrap_or(1.0);
            Some((name, weight))
        }
        _ => None,
    }
}

/// A random version-4 UUID, as g3 sends.
fn new_id() -> [u8; 16] {
    let random = |salt: u64| RandomState::new().hash_one((std::time::Instant::now(), salt));
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random(1).to_le_bytes());
    id[8..].copy_from_slice(&random(2).to_le_bytes());
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}
