//! A log event as a proxy task builds it, and as the logger thread writes it out. A task's
//! thread does as little as it can: strings are copied into one buffer, numbers, addresses,
//! times, durations and ids are kept as they are, and the event itself comes from a pool.
//! The logger thread formats those values ([`Event::render`]) into a buffer of its own, so
//! that an event's memory is written by one thread only. On a busy proxy every microsecond
//! on a task's thread costs several in requests.

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use g3proxy_proto::{Host, HostPort};
use g3proxy_shared::types::Rfc3339Micros;

/// One field's value, borrowed from its event: strings are quoted by the text formats,
/// numbers are not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(u64),
}

/// Where a field's value is kept: the bounds of a string in the event's buffer, or the value
/// as it is, for the logger thread to write out. Sixteen bytes: an event's slots are most
/// of the memory that travels from a task's thread to the logger thread's.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Str(u32, u32),
    Int(u64),
    /// An IPv4 socket address (IPv6 ones are written out as strings).
    V4(u32, u16),
    /// An RFC 3339 time in UTC with microseconds (g3's `start_at`), as microseconds since
    /// the epoch.
    Time(u64),
    /// A duration as g3 writes it (`{:.3?}`: `1.234ms`), in nanoseconds.
    Elapsed(u64),
}

/// One log event: its fields in the order they are written (the text drivers that sort do
/// so themselves).
#[derive(Debug, Clone)]
pub struct Event {
    /// g3's message: empty for task logs, the error in full for escape logs.
    pub message: String,
    text: String,
    slots: Vec<(&'static str, Slot)>,
}

/// Spare events a thread keeps at most.
const SPARE_MAX: usize = 1024;

thread_local! {
    /// Events this thread built, written and given back by the logger thread, cleared for
    /// reuse: a task takes one rather than allocate. An event's memory so stays with the
    /// thread that built it (in its cache), and no other thread frees it (glibc's arenas
    /// make that a locked, slow path).
    static SPARE: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

/// Takes `events` (cleared by [`Event::clear`]) into this thread's spares, as many as it
/// keeps; the others are freed.
pub(super) fn keep_spares(events: &mut Vec<Event>) {
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        let room = SPARE_MAX.saturating_sub(spare.len());
        spare.extend(events.drain(..).take(room));
    });
    events.clear();
}

impl Event {
    pub fn new() -> Event {
        let spare = SPARE.try_with(|spare| spare.borrow_mut().pop());
        spare.ok().flatten().unwrap_or_else(|| Event {
            message: String::new(),
            text: String::with_capacity(512),
            slots: Vec::with_capacity(32),
        })
    }

    /// Empties the event for reuse; `false` when it grew too large to keep.
    pub(super) fn clear(&mut self) -> bool {
        self.message.clear();
        self.text.clear();
        self.slots.clear();
        self.text.capacity() <= 8192 && self.message.capacity() <= 8192
    }

    fn push(&mut self, key: &'static str, slot: Slot) -> &mut Event {
        self.slots.push((key, slot));
        self
    }

    /// `key` for the text written into the buffer since `start`.
    fn push_text(&mut self, key: &'static str, start: usize) -> &mut Event {
        let slot = Slot::Str(start as u32, self.text.len() as u32);
        self.push(key, slot)
    }

    /// A value written with its `Display` (for what has no cheaper setter below).
    pub fn str(&mut self, key: &'static str, value: impl Display) -> &mut Event {
        let start = self.text.len();
        let _ = write!(self.text, "{value}");
        self.push_text(key, start)
    }

    /// A string value, copied as it is.
    pub fn text(&mut self, key: &'static str, value: &str) -> &mut Event {
        let start = self.text.len();
        self.text.push_str(value);
        self.push_text(key, start)
    }

    /// [`Event::text`] when there is one (g3 leaves absent fields out).
    pub fn opt_text(&mut self, key: &'static str, value: Option<&str>) -> &mut Event {
        match value {
            Some(value) => self.text(key, value),
            None => self,
        }
    }

    /// Text bytes as they came from a peer, invalid UTF-8 replaced.
    pub fn lossy(&mut self, key: &'static str, value: &[u8]) -> &mut Event {
        match std::str::from_utf8(value) {
            Ok(text) => self.text(key, text),
            Err(_) => self.text(key, &String::from_utf8_lossy(value)),
        }
    }

    /// Replaces the value of `key` (added if missing).
    pub fn set_text(&mut self, key: &'static str, value: &str) -> &mut Event {
        let start = self.text.len();
        self.text.push_str(value);
        let slot = Slot::Str(start as u32, self.text.len() as u32);
        match self.slots.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = slot,
            None => self.slots.push((key, slot)),
        }
        self
    }

    pub fn addr(&mut self, key: &'static str, addr: SocketAddr) -> &mut Event {
        match addr {
            SocketAddr::V4(v4) => self.push(key, Slot::V4(u32::from(*v4.ip()), v4.port())),
            SocketAddr::V6(_) => self.str(key, addr),
        }
    }

    /// [`Event::addr`] when there is one.
    pub fn opt_addr(&mut self, key: &'static str, addr: Option<SocketAddr>) -> &mut Event {
        match addr {
            Some(addr) => self.addr(key, addr),
            None => self,
        }
    }

    /// [`Event::host_port`] when there is one.
    pub fn opt_host_port(&mut self, key: &'static str, value: Option<&HostPort>) -> &mut Event {
        match value {
            Some(value) => self.host_port(key, value),
            None => self,
        }
    }

    /// A host and port as its `Display` writes it (`[v6]:port` for IPv6).
    pub fn host_port(&mut self, key: &'static str, value: &HostPort) -> &mut Event {
        match value {
            HostPort {
                host: Host::Ip(ip),
                port,
            } => self.addr(key, SocketAddr::new(*ip, *port)),
            HostPort {
                host: Host::Domain(domain),
                port,
            } => {
                let start = self.text.len();
                self.text.push_str(domain);
                self.text.push(':');
                push_decimal(&mut self.text, u64::from(*port));
                self.push_text(key, start)
            }
        }
    }

    pub fn time(&mut self, key: &'static str, at: SystemTime) -> &mut Event {
        let micros = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        self.push(key, Slot::Time(u64::try_from(micros).unwrap_or(u64::MAX)))
    }

    pub fn elapsed(&mut self, key: &'static str, duration: Duration) -> &mut Event {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.push(key, Slot::Elapsed(nanos))
    }

    /// [`Event::elapsed`] when there is one.
    pub fn opt_elapsed(&mut self, key: &'static str, duration: Option<Duration>) -> &mut Event {
        match duration {
            Some(duration) => self.elapsed(key, duration),
            None => self,
        }
    }

    /// An id in lowercase hex (task ids).
    pub fn id(&mut self, key: &'static str, id: [u8; 16]) -> &mut Event {
        let start = self.text.len();
        hex(&id, &mut self.text);
        self.push_text(key, start)
    }

    pub fn int(&mut self, key: &'static str, value: u64) -> &mut Event {
        self.push(key, Slot::Int(value))
    }

    /// [`Event::int`] when there is one.
    pub fn opt_int(&mut self, key: &'static str, value: Option<u64>) -> &mut Event {
        match value {
            Some(value) => self.int(key, value),
            None => self,
        }
    }

    /// The event with every value written out, the ones kept as they are into `scratch`
    /// (the logger thread's, reused from event to event).
    pub(super) fn render<'a>(&'a self, scratch: &'a mut Scratch) -> Rendered<'a> {
        let Scratch { text, spans } = scratch;
        text.clear();
        spans.clear();
        for (_, slot) in &self.slots {
            let start = text.len();
            match *slot {
                Slot::Str(..) | Slot::Int(_) => {}
                Slot::V4(ip, port) => {
                    for (i, octet) in ip.to_be_bytes().into_iter().enumerate() {
                        if i > 0 {
                            text.push('.');
                        }
                        push_decimal(text, u64::from(octet));
                    }
                    text.push(':');
                    push_decimal(text, u64::from(port));
                }
                Slot::Time(micros) => {
                    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
                    let _ = write!(text, "{}", Rfc3339Micros(at));
                }
                Slot::Elapsed(nanos) => push_elapsed(text, Duration::from_nanos(nanos)),
            }
            spans.push((start, text.len()));
        }
        Rendered {
            event: self,
            scratch: text,
            spans,
        }
    }
}

/// Where the logger thread writes out the values an event keeps as they are.
#[derive(Default)]
pub(super) struct Scratch {
    text: String,
    /// By slot, where its value stands in `text`.
    spans: Vec<(usize, usize)>,
}

/// An event with its values written out, as the drivers read it.
#[derive(Clone, Copy)]
pub struct Rendered<'a> {
    event: &'a Event,
    scratch: &'a str,
    spans: &'a [(usize, usize)],
}

impl<'a> Rendered<'a> {
    /// g3's message: empty for task logs.
    pub fn message(&self) -> &'a str {
        &self.event.message
    }

    /// How many fields [`Rendered::fields`] gives.
    pub fn field_count(&self) -> usize {
        self.event.slots.len()
    }

    /// The fields in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, Value<'a>)> + use<'a> {
        let Rendered {
            event,
            scratch,
            spans,
        } = *self;
        event
            .slots
            .iter()
            .zip(spans)
            .map(move |((key, slot), &(start, end))| {
                let value = match *slot {
                    Slot::Str(start, end) => Value::Str(&event.text[start as usize..end as usize]),
                    Slot::Int(n) => Value::Int(n),
                    _ => Value::Str(&scratch[start..end]),
                };
                (*key, value)
            })
    }
}

/// `n` in decimal at the end of `out` (an address's octets and ports are most of them).
pub(super) fn push_decimal(out: &mut String, n: u64) {
    let digit = |d: u64| char::from(b'0' + (d % 10) as u8);
    if n < 1000 {
        if n >= 100 {
            out.push(digit(n / 100));
        }
        if n >= 10 {
            out.push(digit(n / 10));
        }
        out.push(digit(n));
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    while rest > 0 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// `duration` as its `{:.3?}` writes it (`1.234ms`, `12.000ns`: the unit that keeps the
/// whole part above zero, three decimals rounded half to even), without the formatting
/// machinery.
fn push_elapsed(out: &mut String, duration: Duration) {
    let nanos = u64::from(duration.subsec_nanos());
    let (mut whole, fraction, unit, name) = if duration.as_secs() > 0 {
        (duration.as_secs(), nanos, 1_000_000_000, "s")
    } else if nanos >= 1_000_000 {
        (nanos / 1_000_000, nanos % 1_000_000, 1_000_000, "ms")
    } else if nanos >= 1_000 {
        (nanos / 1_000, nanos % 1_000, 1_000, "µs")
    } else {
        (nanos, 0, 1, "ns")
    };
    let mut thousandths = fraction * 1000 / unit;
    // Half of a thousandth rounds to the even digit, as the standard library has it.
    let rest = fraction * 1000 % unit * 2;
    if rest > unit || (rest == unit && thousandths % 2 == 1) {
        thousandths += 1;
        if thousandths == 1000 {
            thousandths = 0;
            whole += 1;
        }
    }
    push_decimal(out, whole);
    out.push('.');
    let digits = [thousandths / 100, thousandths / 10 % 10, thousandths % 10];
    out.extend(digits.map(|d| char::from(b'0' + d as u8)));
    out.push_str(name);
}

/// `bytes` as lowercase hex digits at the end of `out`.
fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_kept_as_they_are_read_as_their_display() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        for text in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:443",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut event = Event::new();
            event
                .addr("a", addr)
                .opt_addr("b", Some(addr))
                .opt_addr("c", None)
                .text("d", "plain")
                .time("e", at)
                .elapsed("f", Duration::from_micros(1234))
                .id("g", [0xab; 16])
                .int("h", 7);
            let mut scratch = Scratch::default();
            let fields: Vec<_> = event.render(&mut scratch).fields().collect();
            let id = "ab".repeat(16);
            assert_eq!(
                fields,
                [
                    ("a", Value::Str(text)),
                    ("b", Value::Str(text)),
                    ("d", Value::Str("plain")),
                    ("e", Value::Str("2023-11-14T22:13:20.123456Z")),
                    ("f", Value::Str("1.234ms")),
                    ("g", Value::Str(&id)),
                    ("h", Value::Int(7)),
                ]
            );
        }
    }

    #[test]
    fn durations_read_as_their_debug_with_three_decimals() {
        let mut nanos = vec![
            0,
            1,
            999,
            1_000,
            1_499,
            1_500,
            999_999,
            1_000_000,
            1_234_499,
            1_234_500,
            1_235_500,
            1_001_500_000,
            1_999_999,
            999_999_499,
            999_999_500,
            999_999_999,
            1_000_000_000,
            1_000_499_999,
            1_000_500_000,
            59_999_999_999,
            3_600_000_000_000,
        ];
        // And a spread over every unit.
        let mut n: u64 = 7;
        while n < 100_000_000_000 {
            nanos.push(n);
            n = n * 13 + 11;
        }
        for n in nanos {
            let duration = Duration::from_nanos(n);
            let mut out = String::new();
            push_elapsed(&mut out, duration);
            assert_eq!(out, format!("{duration:.3?}"), "{n} ns");
        }
    }

    #[test]
    fn slots_stay_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn numbers_read_as_their_display() {
        for n in [
            0,
            9,
            10,
            99,
            100,
            255,
            999,
            1000,
            65535,
            123_456_789,
            u64::MAX,
        ] {
            let mut out = String::from("x");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn host_ports_read_as_their_display() {
        for text in ["example.net:80", "10.0.0.1:443", "[2001:db8::1]:8443"] {
            let target = HostPort::parse_authority(text, None).unwrap();
            let mut event = Event::new();
            event.host_port("upstream", &target);
            let mut scratch = Scratch::default();
            let fields: Vec<_> = event.render(&mut scratch).fields().collect();
            assert_eq!(fields, [("upstream", Value::Str(text))]);
            assert_eq!(target.to_string(), text);
        }
    }
}
