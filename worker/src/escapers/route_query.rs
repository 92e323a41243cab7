//! `type: route_query`: asks an agent which escaper a task takes, in g3proxy's protocol: a
//! MessagePack map per UDP datagram, `{id: 16 bytes, user, host[, client_ip]}`, answered
//! with `{id, nodes: name | [name | {name, weight}], ttl}`. Answers are cached per user, host
//! (and client, when it is sent): fresh for their ttl (at most `maximum_cache_ttl`; none or 0
//! is `protective_cache_ttl`), then used while asked again for `cache_vanish_wait`. A task
//! waits `cache_request_timeout` for an answer; without one, or when the answer names no
//! escaper of `query_allowed_next`, it takes `fallback_node`. A query the agent leaves
//! unanswered for `query_wait_timeout` is cached as empty for the protective ttl.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use g3proxy_proto::msgpack::{self, Value};
use g3proxy_shared::config::escapers::RouteQueryConfig;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Dependencies, Escaper, EscaperOps, Leg};
use crate::error::TaskError;
use crate::pick::Picker;

pub struct RouteQueryEscaper {
    allowed: HashMap<String, Arc<Escaper>>,
    fallback: Arc<Escaper>,
    agent: Arc<Agent>,
}

/// What is asked: the task's user (empty without one), target host and, when the config
/// says so, client.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Question {
    user: String,
    host: String,
    client: Option<IpAddr>,
}

/// An answer: the allowed escapers it named, to pick from; `None` when it named none.
type Nodes = Option<Arc<Picker<String>>>;

struct Slot {
    answer: Option<(Nodes, Instant, Instant)>,
    /// Set while a query is out; its receivers learn when the answer is in.
    pending: Option<watch::Receiver<bool>>,
}

/// Questions and their answers; entries past use are dropped when the table has grown to
/// `sweep_at` (doubling from the last sweep, so a sweep's cost is spread over the inserts).
struct Cache {
    slots: HashMap<Question, Slot>,
    sweep_at: usize,
}

const FIRST_SWEEP_AT: usize = 4096;
/// Questions kept at most; beyond, only those in flight.
const MAX_QUESTIONS: usize = 1 << 16;

struct Agent {
    config: RouteQueryConfig,
    allowed: Vec<String>,
    /// Made on first use: the socket needs the worker's runtime.
    socket: OnceLock<Arc<UdpSocket>>,
    std_socket: Mutex<Option<StdUdpSocket>>,
    cache: Mutex<Cache>,
    /// Queries out, by id: what they asked and who waits for them.
    out: Mutex<HashMap<[u8; 16], Outstanding>>,
}

/// A query sent and not answered yet: its question, and how to tell its waiters.
type Outstanding = (Question, watch::Sender<bool>);

impl RouteQueryEscaper {
    pub fn build(config: &RouteQueryConfig, deps: &Dependencies) -> anyhow::Result<Self> {
        let peer = config.query_peer_addr;
        let socket = StdUdpSocket::bind(super::connect::any_address_for(peer))?;
        socket.connect(peer)?;
        socket.set_nonblocking(true)?;
        let allowed = config
            .query_allowed_next
            .iter()
            .map(|name| (name.clone(), deps.escaper(name)))
            .collect();
        Ok(RouteQueryEscaper {
            allowed,
            fallback: deps.escaper(&config.fallback_node),
            agent: Arc::new(Agent {
                config: config.clone(),
                allowed: config.query_allowed_next.clone(),
                socket: OnceLock::new(),
                std_socket: Mutex::new(Some(socket)),
                cache: Mutex::new(Cache {
                    slots: HashMap::new(),
                    sweep_at: FIRST_SWEEP_AT,
                }),
                out: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl EscaperOps for RouteQueryEscaper {
    async fn next_for(&self, leg: &Leg<'_>) -> Result<Option<&Escaper>, TaskError> {
        let question = Question {
            user: leg.user_name().unwrap_or_default().to_string(),
            host: leg.target.host.to_string(),
            client: self
                .agent
                .config
                .query_pass_client_ip
                .then_some(leg.client_ip()),
        };
        let nodes = self.agent.nodes_for(&question).await;
        let picked = nodes.and_then(|nodes| {
            let name = nodes.pick(leg.client_ip().to_string().as_bytes());
            self.allowed.get(name)
        });
        Ok(Some(picked.unwrap_or(&self.fallback)))
    }
}

impl Agent {
    /// The cached answer, or the one the agent gives within `cache_request_timeout`.
    async fn nodes_for(self: &Arc<Self>, question: &Question) -> Nodes {
        let mut pending = {
            let now = Instant::now();
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let slot = cache.slots.entry(question.clone()).or_insert(Slot {
                answer: None,
                pending: None,
            });
            match &slot.answer {
                Some((nodes, expire, _)) if now < *expire => return nodes.clone(),
                Some((nodes, _, vanish)) if now < *vanish => {
                    let nodes = nodes.clone();
                    if slot.pending.is_none() {
                        slot.pending = Some(self.ask(question));
                    }
                    return nodes;
                }
                _ => {}
            }
            match &slot.pending {
                Some(pending) => pending.clone(),
                None => {
                    let pending = self.ask(question);
                    slot.pending = Some(pending.clone());
                    pending
                }
            }
        };
        let wait = self.config.cache_request_timeout.0;
        let _ = tokio::time::timeout(wait, pending.wait_for(|answered| *answered)).await;
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .slots
            .get(question)
            .and_then(|slot| slot.answer.as_ref())
            .and_then(|(nodes, _, vanish)| (Instant::now() < *vanish).then(|| nodes.clone()))
            .flatten()
    }

    /// Sends a query for `question`; the answer, or its absence after
    /// `query_wait_timeout`, goes into the cache.
    fn ask(self: &Arc<Self>, question: &Question) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
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
        let mut datagram = Vec::with_capacity(64);
        msgpack::encode(&Value::Map(entries), &mut datagram);
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (question.clone(), sender));
        let agent = self.clone();
        tokio::spawn(async move {
            if let Some(socket) = agent.socket() {
                let _ = socket.send(&datagram).await;
            }
            tokio::time::sleep(agent.config.query_wait_timeout.0).await;
            let unanswered = agent
                .out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some((question, sender)) = unanswered {
                let ttl = agent.config.protective_cache_ttl;
                agent.store(&question, None, ttl);
                let _ = sender.send(true);
            }
        });
        receiver
    }

    /// The connected socket, and the task that reads the agent's answers, made once.
    fn socket(self: &Arc<Self>) -> Option<Arc<UdpSocket>> {
        if let Some(socket) = self.socket.get() {
            return Some(socket.clone());
        }
        // One caller makes it; another that raced here finds it made.
        let mut std_socket = self.std_socket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(socket) = self.socket.get() {
            return Some(socket.clone());
        }
        let socket = Arc::new(UdpSocket::from_std(std_socket.take()?).ok()?);
        let _ = self.socket.set(socket.clone());
        drop(std_socket);
        let agent = Arc::downgrade(self);
        let reader = socket.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                // An error here is an ICMP refusal of an earlier query: read on, after a pause
                // should errors keep coming.
                let Ok(length) = reader.recv(&mut buffer).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Some(agent) = agent.upgrade() else {
                    return;
                };
                agent.answer(&buffer[..length]);
            }
        });
        Some(socket)
    }

    /// An answer from the agent: cached for its question, its waiters told.
    fn answer(&self, datagram: &[u8]) {
        let Ok((value, _)) = msgpack::decode(datagram) else {
            tracing::debug!("route_query: an answer that is not MessagePack");
            return;
        };
        let Some(id) = value.get("id").and_then(answer_id) else {
            return;
        };
        let Some((question, sender)) = self
            .out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
        else {
            return;
        };
        let config = &self.config;
        let ttl = match value.get("ttl").and_then(Value::as_u64) {
            None | Some(0) => config.protective_cache_ttl,
            Some(ttl) => u32::try_from(ttl)
                .unwrap_or(u32::MAX)
                .min(config.maximum_cache_ttl),
        };
        let named: Vec<(String, f64)> = match value.get("nodes") {
            Some(Value::Array(items)) => items.iter().filter_map(weighted_name).collect(),
            Some(single) => weighted_name(single).into_iter().collect(),
            None => Vec::new(),
        };
        let allowed: Vec<(String, f64)> = named
            .into_iter()
            .filter(|(name, weight)| self.allowed.contains(name) && *weight > 0.0)
            .collect();
        let nodes =
            (!allowed.is_empty()).then(|| Arc::new(Picker::new(allowed, config.cache_pick_policy)));
        self.store(&question, nodes, ttl);
        let _ = sender.send(true);
    }

    fn store(&self, question: &Question, nodes: Nodes, ttl: u32) {
        let expire = Instant::now() + Duration::from_secs(u64::from(ttl));
        let vanish = expire + self.config.cache_vanish_wait.0;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Questions nobody asked again since their answer vanished go.
        if cache.slots.len() >= cache.sweep_at {
            cache.slots.retain(|_, slot| {
                slot.pending.is_some() || slot.answer.as_ref().is_some_and(|a| now < a.2)
            });
            if cache.slots.len() > MAX_QUESTIONS {
                cache.slots.retain(|_, slot| slot.pending.is_some());
            }
            cache.sweep_at = (cache.slots.len() * 2).max(FIRST_SWEEP_AT);
        }
        let slot = cache.slots.entry(question.clone()).or_insert(Slot {
            answer: None,
            pending: None,
        });
        slot.answer = Some((nodes, expire, vanish));
        slot.pending = None;
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
