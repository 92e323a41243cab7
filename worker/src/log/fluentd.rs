//! `fluentd`: the forward protocol over TCP, each event one message in MessagePack:
//! `[tag, time, record]`, the tag `g3proxy.<log type>` (`g3proxy.Task`), the time an
//! EventTime (seconds and nanoseconds), the record the event's fields. A connection that
//! fails is made again after `connect_delay`; events meanwhile are lost.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use g3proxy_proto::msgpack::{self, Value as Pack};
use g3proxy_shared::config::log::FluentdConfig;

use super::{Event, Value, Write};

pub struct Fluentd {
    config: FluentdConfig,
    tag: String,
    stream: Option<TcpStream>,
    /// No connecting before this, after a failure.
    next_try: Option<Instant>,
}

impl Fluentd {
    pub fn new(config: &FluentdConfig, kind: &str) -> Fluentd {
        Fluentd {
            config: config.clone(),
            tag: format!("g3proxy.{kind}"),
            stream: None,
            next_try: None,
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let address: SocketAddr = self.config.address;
        let stream = TcpStream::connect_timeout(&address, self.config.connect_timeout.0)?;
        stream.set_write_timeout(Some(self.config.write_timeout.0))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn message(&self, event: &Event) -> Vec<u8> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let mut time = Vec::with_capacity(8);
        time.extend_from_slice(&(now.as_secs() as u32).to_be_bytes());
        time.extend_from_slice(&now.subsec_nanos().to_be_bytes());
        let message = (!event.message.is_empty()).then_some(("msg", Value::Str(&event.message)));
        let record = event
            .fields()
            .chain(message)
            .map(|(key, value)| {
                let value = match value {
                    Value::Str(text) => Pack::Str(text.to_string()),
                    Value::Int(n) => Pack::Int(i128::from(n)),
                };
                (Pack::Str(key.to_string()), value)
            })
            .collect();
        let message = Pack::Array(vec![
            Pack::Str(self.tag.clone()),
            Pack::Ext(0, time),
            Pack::Map(record),
        ]);
        let mut out = Vec::with_capacity(512);
        msgpack::encode(&message, &mut out);
        out
    }
}

impl Write for Fluentd {
    fn write(&mut self, event: &Event) -> Option<usize> {
        if self.stream.is_none() {
            if self.next_try.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            match self.connect() {
                Ok(stream) => self.stream = Some(stream),
                Err(_) => {
                    self.next_try = Some(Instant::now() + self.config.connect_delay.0);
                    return None;
                }
            }
        }
        let message = self.message(event);
        let stream = self.stream.as_mut()?;
        if stream.write_all(&message).is_err() {
            self.stream = None;
            self.next_try = Some(Instant::now() + self.config.connect_delay.0);
            return None;
        }
        Some(message.len())
    }
}
