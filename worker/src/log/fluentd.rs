//! `fluentd`: the forward protocol over TCP or TLS, each event one message in MessagePack
//! (a batch of them in one write): `[tag, time, record]`, the tag `g3proxy.<log type>`
//! (`g3proxy.Task`), the time an EventTime (seconds and nanoseconds), the record the
//! event's fields. With `shared_key` the
//! connection first goes through the protocol's handshake (the server's `HELO`, our `PING`
//! with the key's digest and, when the server asks, a user name and password digest, its
//! `PONG` proving it knows the key too). A connection that fails is made again after
//! `connect_delay`; events meanwhile are lost. This runs on the logger's own thread, so the
//! I/O here is blocking, bounded by `connect_timeout` and `write_timeout`.

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use g3proxy_proto::msgpack::{self, Value as Pack};
use g3proxy_shared::config::log::FluentdConfig;
use ring::digest::{SHA512, digest};
use rustls::pki_types::ServerName;

use super::{Rendered, Value, Write};

/// The most a handshake message may take (a HELO or PONG is a few dozen bytes).
const HANDSHAKE_MAX: usize = 4096;

enum Connection {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl std::io::Read for Connection {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read(buffer),
            Connection::Tls(stream) => stream.read(buffer),
        }
    }
}

impl std::io::Write for Connection {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.write(data),
            Connection::Tls(stream) => stream.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Plain(stream) => stream.flush(),
            Connection::Tls(stream) => stream.flush(),
        }
    }
}

pub struct Fluentd {
    config: FluentdConfig,
    tag: String,
    /// Who we say we are in the handshake: `hostname`, else the machine's name.
    hostname: String,
    stream: Option<Connection>,
    /// No connecting before this, after a failure.
    next_try: Option<Instant>,
    /// The messages of the batch, one after another, and how many.
    batch: Vec<u8>,
    pending: usize,
    /// The batch's EventTime (seconds and nanoseconds, big-endian).
    time: [u8; 8],
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// SHA-512 of the parts in a row, in lower-case hex (the forward protocol's digests).
fn sha512_hex(parts: &[&[u8]]) -> String {
    let joined: Vec<u8> = parts.concat();
    digest(&SHA512, &joined)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A string or binary field of a handshake message.
fn bytes_of(value: Option<&Pack>) -> Vec<u8> {
    match value {
        Some(Pack::Str(text)) => text.as_bytes().to_vec(),
        Some(Pack::Bin(bytes)) => bytes.clone(),
        _ => Vec::new(),
    }
}

/// One MessagePack value from `stream` (a handshake message).
fn read_message(stream: &mut Connection) -> std::io::Result<Pack> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match msgpack::decode(&buffer) {
            Ok((value, _)) => return Ok(value),
            Err(msgpack::MsgpackError::Truncated) => {}
            Err(error) => return Err(invalid(format!("fluentd handshake: {error}"))),
        }
        if buffer.len() > HANDSHAKE_MAX {
            return Err(invalid("fluentd handshake message too long"));
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(invalid("fluentd closed the connection in the handshake"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

impl Fluentd {
    pub fn new(config: &FluentdConfig, kind: &str) -> Fluentd {
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        });
        Fluentd {
            config: config.clone(),
            tag: format!("g3proxy.{kind}"),
            hostname,
            stream: None,
            next_try: None,
            batch: Vec::new(),
            pending: 0,
            time: [0; 8],
        }
    }

    fn connect(&self) -> std::io::Result<Connection> {
        let address: SocketAddr = self.config.address;
        let stream = TcpStream::connect_timeout(&address, self.config.connect_timeout.0)?;
        stream.set_write_timeout(Some(self.config.write_timeout.0))?;
        // Reads happen only in the handshake.
        stream.set_read_timeout(Some(self.config.connect_timeout.0))?;
        let _ = stream.set_nodelay(true);
        let mut connection = match &self.config.tls_client {
            None => Connection::Plain(stream),
            Some(tls) => {
                let name = self
                    .config
                    .tls_name
                    .clone()
                    .unwrap_or_else(|| address.ip().to_string());
                let name = ServerName::try_from(name).map_err(|e| invalid(e.to_string()))?;
                let client = rustls::ClientConnection::new(Arc::clone(&tls.rustls), name)
                    .map_err(|e| invalid(e.to_string()))?;
                // The handshake now, within its timeout, so that a bad certificate is a
                // failed connection.
                stream.set_read_timeout(Some(tls.handshake_timeout))?;
                let mut tls = rustls::StreamOwned::new(client, stream);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                tls.sock
                    .set_read_timeout(Some(self.config.connect_timeout.0))?;
                Connection::Tls(Box::new(tls))
            }
        };
        if let Some(key) = &self.config.shared_key {
            self.authenticate(&mut connection, key.0.as_bytes())?;
        }
        Ok(connection)
    }

    /// The forward protocol's handshake (HELO, PING, PONG).
    fn authenticate(&self, stream: &mut Connection, shared_key: &[u8]) -> std::io::Result<()> {
        let helo = read_message(stream)?;
        let Pack::Array(items) = &helo else {
            return Err(invalid("fluentd sent no HELO"));
        };
        if items.first().and_then(Pack::as_str) != Some("HELO") {
            return Err(invalid("fluentd sent no HELO"));
        }
        let options = items.get(1);
        let nonce = bytes_of(options.and_then(|o| o.get("nonce")));
        let auth_salt = bytes_of(options.and_then(|o| o.get("auth")));
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| invalid("no random salt"))?;
        let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        let hostname = self.hostname.as_bytes();
        let key_digest = sha512_hex(&[salt.as_bytes(), hostname, &nonce, shared_key]);
        // A server with users sends an `auth` salt and wants the user's digest.
        let (username, password_digest) = match (&self.config.username, auth_salt.is_empty()) {
            (Some(user), false) => {
                let password = self.config.password.as_ref().map_or("", |p| p.0.as_str());
                let digest = sha512_hex(&[&auth_salt, user.as_bytes(), password.as_bytes()]);
                (user.clone(), digest)
            }
            _ => (String::new(), String::new()),
        };
        let ping = Pack::Array(vec![
            Pack::Str("PING".into()),
            Pack::Str(self.hostname.clone()),
            Pack::Str(salt.clone()),
            Pack::Str(key_digest),
            Pack::Str(username),
            Pack::Str(password_digest),
        ]);
        let mut out = Vec::new();
        msgpack::encode(&ping, &mut out);
        stream.write_all(&out)?;
        let pong = read_message(stream)?;
        let Pack::Array(items) = &pong else {
            return Err(invalid("fluentd sent no PONG"));
        };
        if items.first().and_then(Pack::as_str) != Some("PONG") {
            return Err(invalid("fluentd sent no PONG"));
        }
        if !matches!(items.get(1), Some(Pack::Bool(true))) {
            let reason = items.get(2).and_then(Pack::as_str).unwrap_or_default();
            return Err(invalid(format!("fluentd refused us: {reason}")));
        }
        // The server proves it holds the key too.
        let server_name = bytes_of(items.get(3));
        let expected = sha512_hex(&[salt.as_bytes(), &server_name, &nonce, shared_key]);
        if bytes_of(items.get(4)) != expected.as_bytes() {
            return Err(invalid("fluentd's PONG does not prove the shared key"));
        }
        Ok(())
    }

    /// Appends `[tag, time, record]` for `event` to the batch, encoded straight from its
    /// fields.
    fn encode(&mut self, event: Rendered<'_>) -> usize {
        let start = self.batch.len();
        // The events of a batch (written within a few microseconds of each other) share
        // one time: a clock read per batch, not per event.
        if start == 0 {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            self.time[..4].copy_from_slice(&(now.as_secs() as u32).to_be_bytes());
            self.time[4..].copy_from_slice(&now.subsec_nanos().to_be_bytes());
        }
        let out = &mut self.batch;
        msgpack::encode_array_len(3, out);
        msgpack::encode_str(&self.tag, out);
        msgpack::encode_ext(0, &self.time, out);
        let message = (!event.message().is_empty()).then_some(("msg", Value::Str(event.message())));
        msgpack::encode_map_len(event.field_count() + usize::from(message.is_some()), out);
        for (key, value) in event.fields().chain(message) {
            msgpack::encode_str(key, out);
            match value {
                Value::Str(text) => msgpack::encode_str(text, out),
                Value::Int(n) => msgpack::encode_uint(n, out),
            }
        }
        self.batch.len() - start
    }
}

impl Write for Fluentd {
    fn write(&mut self, event: Rendered<'_>) -> usize {
        self.pending += 1;
        self.encode(event)
    }

    fn flush(&mut self) -> usize {
        let count = std::mem::take(&mut self.pending);
        let sent = self.send();
        self.batch.clear();
        if sent { count } else { 0 }
    }
}

impl Fluentd {
    /// Writes the batch on the connection, made first if needed; whether it went.
    fn send(&mut self) -> bool {
        if self.stream.is_none() {
            if self.next_try.is_some_and(|at| Instant::now() < at) {
                return false;
            }
            match self.connect() {
                Ok(stream) => self.stream = Some(stream),
                Err(error) => {
                    tracing::warn!("fluentd {}: {error}", self.config.address);
                    self.next_try = Some(Instant::now() + self.config.connect_delay.0);
                    return false;
                }
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        if stream
            .write_all(&self.batch)
            .and_then(|()| stream.flush())
            .is_err()
        {
            self.stream = None;
            self.next_try = Some(Instant::now() + self.config.connect_delay.0);
            return false;
        }
        true
    }
}
