//! A peer asked over UDP, one MessagePack map per datagram each way, whose answers are
//! cached: what `route_query` (its query agent) and `route_geoip` (the ip-locate service)
//! share. A question is sent once however many tasks ask it at once; the answer is fresh for
//! its ttl (at most the maximum; none given: the default), then still used for `vanish_wait`
//! while it is asked again. A task waits `request_timeout` for an answer; a question the peer
//! leaves unanswered for `wait_timeout` is cached as unanswered for the default ttl. What a
//! question and an answer look like on the wire is the [`Protocol`]'s.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use g3proxy_proto::msgpack::{self, Value};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

/// One peer protocol: how a question is written, and how an answer names its question.
pub trait Protocol: Send + Sync + 'static {
    type Question: Clone + Eq + Hash + Send + Sync + 'static;
    /// What an answer says (cached; `None` is cached too, as "nothing").
    type Answer: Clone + Send + Sync + 'static;
    /// What ties an answer to its question (a query id, the address asked about).
    type Tag: Clone + Eq + Hash + Send + 'static;

    /// The map to send for `question`, and the tag its answer will carry.
    fn query(&self, question: &Self::Question) -> (Value, Self::Tag);

    /// What a datagram from the peer answers, if it answers a question.
    fn answer(&self, value: &Value) -> Option<Answered<Self>>;
}

/// An answer as read: its question's tag, what it says, and its ttl if it gives one.
pub struct Answered<P: Protocol + ?Sized> {
    pub tag: P::Tag,
    pub answer: Option<P::Answer>,
    pub ttl: Option<u64>,
}

/// A question sent and not answered yet, how to tell its waiters, and its sequence number
/// (a tag can be asked again while an earlier query's timer still runs).
type Outstanding<P> = (<P as Protocol>::Question, watch::Sender<bool>, u64);

/// The cache's timings, from the escaper's config.
#[derive(Clone, Copy)]
pub struct Timings {
    pub request_timeout: Duration,
    pub wait_timeout: Duration,
    /// Seconds: for an answer without a ttl (or 0), and for no answer.
    pub default_ttl: u32,
    pub maximum_ttl: u32,
    pub vanish_wait: Duration,
}

impl Timings {
    /// How long an answer is fresh, from the ttl it gives (seconds).
    pub fn ttl(&self, given: Option<u64>) -> u32 {
        match given {
            None | Some(0) => self.default_ttl,
            Some(ttl) => u32::try_from(ttl).unwrap_or(u32::MAX).min(self.maximum_ttl),
        }
    }
}

struct Slot<A> {
    /// What the peer said, until when it is fresh, until when it may still be used.
    answer: Option<(Option<A>, Instant, Instant)>,
    /// Set while a query is out; its receivers learn when the answer is in.
    pending: Option<watch::Receiver<bool>>,
}

/// Questions and their answers; entries past use are dropped when the table has grown to
/// `sweep_at` (doubling from the last sweep, so a sweep's cost is spread over the inserts).
struct Cache<Q, A> {
    slots: HashMap<Q, Slot<A>>,
    sweep_at: usize,
}

const FIRST_SWEEP_AT: usize = 4096;
/// Questions kept at most; beyond, only those in flight.
const MAX_QUESTIONS: usize = 1 << 16;

pub struct Agent<P: Protocol> {
    protocol: P,
    timings: Timings,
    /// Made on first use: the socket needs the worker's runtime.
    socket: OnceLock<Arc<UdpSocket>>,
    std_socket: Mutex<Option<StdUdpSocket>>,
    cache: Mutex<Cache<P::Question, P::Answer>>,
    /// Queries out, by tag: what they asked and who waits for them.
    out: Mutex<HashMap<P::Tag, Outstanding<P>>>,
    sent: std::sync::atomic::AtomicU64,
}

impl<P: Protocol> Agent<P> {
    /// An agent for the peer at `peer` (the socket is bound and connected now, so that a bad
    /// address fails the config).
    pub fn new(protocol: P, peer: SocketAddr, timings: Timings) -> std::io::Result<Arc<Self>> {
        let socket = StdUdpSocket::bind(super::connect::any_address_for(peer))?;
        socket.connect(peer)?;
        socket.set_nonblocking(true)?;
        Ok(Arc::new(Agent {
            protocol,
            timings,
            socket: OnceLock::new(),
            std_socket: Mutex::new(Some(socket)),
            cache: Mutex::new(Cache {
                slots: HashMap::new(),
                sweep_at: FIRST_SWEEP_AT,
            }),
            out: Mutex::new(HashMap::new()),
            sent: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The cached answer, or the one the peer gives within `request_timeout`.
    pub async fn ask(self: &Arc<Self>, question: &P::Question) -> Option<P::Answer> {
        let mut pending = {
            let now = Instant::now();
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let slot = cache.slots.entry(question.clone()).or_insert(Slot {
                answer: None,
                pending: None,
            });
            match &slot.answer {
                Some((answer, expire, _)) if now < *expire => return answer.clone(),
                Some((answer, _, vanish)) if now < *vanish => {
                    let answer = answer.clone();
                    if slot.pending.is_none() {
                        slot.pending = Some(self.send(question));
                    }
                    return answer;
                }
                _ => {}
            }
            match &slot.pending {
                Some(pending) => pending.clone(),
                None => {
                    let pending = self.send(question);
                    slot.pending = Some(pending.clone());
                    pending
                }
            }
        };
        let wait = self.timings.request_timeout;
        let _ = tokio::time::timeout(wait, pending.wait_for(|answered| *answered)).await;
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .slots
            .get(question)
            .and_then(|slot| slot.answer.as_ref())
            .and_then(|(answer, _, vanish)| (Instant::now() < *vanish).then(|| answer.clone()))
            .flatten()
    }

    /// Sends a query for `question`; the answer, or its absence after `wait_timeout`, goes
    /// into the cache.
    fn send(self: &Arc<Self>, question: &P::Question) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
        let (query, tag) = self.protocol.query(question);
        let mut datagram = Vec::with_capacity(64);
        msgpack::encode(&query, &mut datagram);
        let agent = self.clone();
        let seq = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.clone(), (question.clone(), sender, seq));
        tokio::spawn(async move {
            if let Some(socket) = agent.socket() {
                let _ = socket.send(&datagram).await;
            }
            tokio::time::sleep(agent.timings.wait_timeout).await;
            let unanswered = {
                let mut out = agent.out.lock().unwrap_or_else(|e| e.into_inner());
                match out.get(&tag) {
                    Some((_, _, sent)) if *sent == seq => out.remove(&tag),
                    // Answered, or asked again since: not this timer's any more.
                    _ => None,
                }
            };
            if let Some((question, sender, _)) = unanswered {
                agent.store(&question, None, agent.timings.default_ttl);
                let _ = sender.send(true);
            }
        });
        receiver
    }

    /// The connected socket, and the task that reads the peer's answers, made once.
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
                agent.receive(&buffer[..length]);
            }
        });
        Some(socket)
    }

    /// A datagram from the peer: cached for its question, its waiters told.
    fn receive(&self, datagram: &[u8]) {
        let Ok((value, _)) = msgpack::decode(datagram) else {
            tracing::debug!("an agent's answer that is not MessagePack");
            return;
        };
        let Some(Answered { tag, answer, ttl }) = self.protocol.answer(&value) else {
            return;
        };
        let Some((question, sender, _)) = self
            .out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tag)
        else {
            return;
        };
        self.store(&question, answer, self.timings.ttl(ttl));
        let _ = sender.send(true);
    }

    fn store(&self, question: &P::Question, answer: Option<P::Answer>, ttl: u32) {
        let expire = Instant::now() + Duration::from_secs(u64::from(ttl));
        let vanish = expire + self.timings.vanish_wait;
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
        slot.answer = Some((answer, expire, vanish));
        slot.pending = None;
    }
}
