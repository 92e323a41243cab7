//! `type: hickory`: DNS through the hickory client, over UDP (TCP when an answer comes back
//! truncated), DNS over TLS, over HTTPS (HTTP/2 or HTTP/3) or over QUIC (RFC 9250, on
//! quinn). One kept connection per name server, made
//! again after it fails. A lookup asks the first server, then the next one each second or
//! as soon as the previous one failed, and takes the first answer any of them gives.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use g3proxy_shared::config::resolvers::{CacheTtl, DnsProtocol, HickoryConfig};
use g3proxy_shared::config::tls::TlsClientConfig;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::h2::HttpsClientStream;
use hickory_net::h3::H3ClientStream;
use hickory_net::proto::op::{Message, ResponseCode};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::quic::QuicClientStream;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::tls::tls_client_connect_with_bind_addr;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsRequestSender;
use hickory_net::{DnsError, NetError};
use rustls::pki_types::ServerName;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Family;
use super::record::{DriverError, Record, ResolveError, ServerError};

/// g3's fixed pause before the next name server is asked too.
const NEXT_SERVER_AFTER: Duration = Duration::from_secs(1);
/// CNAME hops followed when a server gives the alias without its addresses.
const MAX_ALIAS_HOPS: usize = 8;
/// Where DNS over HTTPS is served (RFC 8484's example path, and g3's).
const DOH_PATH: &str = "/dns-query";

pub struct HickoryDriver {
    servers: Vec<Arc<NameServer>>,
    each_timeout: Duration,
    ttl: CacheTtl,
}

/// How to reach the name servers, the same for each of them.
struct Transport {
    encryption: Option<Encryption>,
    bind: Option<SocketAddr>,
    connect_timeout: Duration,
    request_timeout: Duration,
    each_tries: u32,
}

struct Encryption {
    protocol: DnsProtocol,
    tls_name: String,
    tls: Arc<rustls::ClientConfig>,
}

struct NameServer {
    address: SocketAddr,
    transport: Arc<Transport>,
    /// The kept connection; `None` until the first lookup and after a failure.
    client: Mutex<Option<Client<TokioRuntimeProvider>>>,
}

impl HickoryDriver {
    pub fn build(config: &HickoryConfig, ttl: CacheTtl) -> anyhow::Result<Self> {
        let encryption = match &config.encryption {
            None => None,
            Some(e) => {
                let tls = match &e.tls_client {
                    Some(tls) => tls.clone(),
                    None => TlsClientConfig::defaults().map_err(|e| anyhow::anyhow!(e))?,
                };
                ServerName::try_from(e.tls_name.clone())
                    .map_err(|_| anyhow::anyhow!("invalid tls_name {:?}", e.tls_name))?;
                Some(Encryption {
                    protocol: e.protocol,
                    tls_name: e.tls_name.clone(),
                    tls: tls.rustls,
                })
            }
        };
        let transport = Arc::new(Transport {
            encryption,
            bind: config.bind_ip.map(|ip| SocketAddr::new(ip, 0)),
            connect_timeout: config.connect_timeout.0,
            request_timeout: config.request_timeout.0,
            each_tries: config.each_tries,
        });
        let port = config.port();
        let servers = config
            .server
            .0
            .iter()
            .map(|ip| {
                Arc::new(NameServer {
                    address: SocketAddr::new(*ip, port),
                    transport: transport.clone(),
                    client: Mutex::new(None),
                })
            })
            .collect();
        Ok(HickoryDriver {
            servers,
            each_timeout: config.each_timeout.0,
            ttl,
        })
    }

    pub async fn query(&self, domain: &str, family: Family) -> Record {
        let Ok(mut name) = Name::from_ascii(domain) else {
            return Record::failed(
                ResolveError::Driver(DriverError::BadName),
                self.ttl.negative_min_ttl,
            );
        };
        name.set_fqdn(true);
        let rtype = match family {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        };
        let mut pending = self.servers.iter();
        let mut asking = JoinSet::new();
        let mut last_failure = ResolveError::Driver(DriverError::Timeout);
        while let Some(server) = pending.next() {
            let (server, question) = (server.clone(), name.clone());
            asking.spawn(async move { server.ask(question, rtype).await });
            let last = pending.len() == 0;
            let wait = if last {
                self.each_timeout
            } else {
                NEXT_SERVER_AFTER
            };
            let next_at = Instant::now() + wait;
            // Until the next server is due, or at once when every server asked has failed.
            while !asking.is_empty() {
                tokio::select! {
                    done = asking.join_next() => match done {
                        Some(Ok(Ok(message))) => return self.record_of(message, &name, rtype).await,
                        Some(Ok(Err(failure))) => last_failure = failure,
                        Some(Err(e)) => {
                            last_failure = ResolveError::Driver(DriverError::Internal(e.to_string()));
                        }
                        None => {}
                    },
                    _ = tokio::time::sleep_until(next_at) => {
                        if last {
                            last_failure = ResolveError::Driver(DriverError::Timeout);
                        }
                        break;
                    }
                }
            }
        }
        Record::failed(last_failure, self.ttl.negative_min_ttl)
    }

    /// The addresses of `message`, following an alias the server did not resolve itself.
    async fn record_of(&self, message: Message, name: &Name, rtype: RecordType) -> Record {
        let mut message = message;
        let mut alias_hops = 0;
        loop {
            if let Some(error) = error_of_code(message.response_code) {
                return Record::failed(error, self.ttl.negative_min_ttl);
            }
            let mut ips: Vec<IpAddr> = Vec::new();
            let mut ttl = u32::MAX;
            let mut alias = None;
            for answer in &message.answers {
                match &answer.data {
                    RData::A(a) if rtype == RecordType::A => ips.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) if rtype == RecordType::AAAA => ips.push(IpAddr::V6(a.0)),
                    RData::CNAME(target) => {
                        alias = Some(target.0.clone());
                        continue;
                    }
                    _ => continue,
                }
                ttl = ttl.min(answer.ttl);
            }
            if !ips.is_empty() {
                return Record::resolved(ips, ttl, &self.ttl);
            }
            let Some(alias) = alias.filter(|a| a != name) else {
                return Record::negative(Ok(Vec::new()), self.ttl.negative_min_ttl);
            };
            alias_hops += 1;
            if alias_hops > MAX_ALIAS_HOPS {
                return Record::failed(
                    ResolveError::Driver(DriverError::BadResp),
                    self.ttl.negative_min_ttl,
                );
            }
            message = match self.servers.first() {
                Some(server) => match server.ask(alias, rtype).await {
                    Ok(message) => message,
                    Err(error) => return Record::failed(error, self.ttl.negative_min_ttl),
                },
                None => return Record::negative(Ok(Vec::new()), self.ttl.negative_min_ttl),
            };
        }
    }
}

impl NameServer {
    /// One question to this server, tried `each_tries` times, over a new connection after a
    /// failed one; a truncated UDP answer is asked again over TCP.
    async fn ask(&self, name: Name, rtype: RecordType) -> Result<Message, ResolveError> {
        let mut last_failure = ResolveError::Driver(DriverError::Timeout);
        for _ in 0..self.transport.each_tries {
            let mut client = match self.client().await {
                Ok(client) => client,
                Err(error) => {
                    last_failure = error;
                    continue;
                }
            };
            match client.query(name.clone(), DNSClass::IN, rtype).await {
                Ok(response) => {
                    let (message, _) = response.into_parts();
                    if message.truncation && self.transport.encryption.is_none() {
                        return self.ask_over_tcp(name, rtype).await;
                    }
                    return Ok(message);
                }
                Err(error) => match answer_of_error(error) {
                    Ok(message) => return Ok(message),
                    Err(failure) => {
                        self.forget_client();
                        last_failure = failure;
                    }
                },
            }
        }
        Err(last_failure)
    }

    async fn ask_over_tcp(&self, name: Name, rtype: RecordType) -> Result<Message, ResolveError> {
        let transport = &self.transport;
        let (stream, handle) = TcpClientStream::new(
            self.address,
            transport.bind,
            Some(transport.connect_timeout),
            TokioRuntimeProvider::new(),
        );
        let stream = stream.await.map_err(error_of)?;
        let (mut client, background) =
            Client::<TokioRuntimeProvider>::with_timeout(stream, handle, transport.request_timeout);
        let background = tokio::spawn(background);
        let answer = client.query(name, DNSClass::IN, rtype).await;
        background.abort();
        match answer {
            Ok(response) => Ok(response.into_parts().0),
            Err(error) => answer_of_error(error),
        }
    }

    /// The kept connection, or a new one.
    async fn client(&self) -> Result<Client<TokioRuntimeProvider>, ResolveError> {
        if let Some(client) = self.lock().as_ref() {
            return Ok(client.clone());
        }
        let client = tokio::time::timeout(self.transport.connect_timeout, self.connect())
            .await
            .map_err(|_| ResolveError::Driver(DriverError::Timeout))??;
        *self.lock() = Some(client.clone());
        Ok(client)
    }

    fn forget_client(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Client<TokioRuntimeProvider>>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self) -> Result<Client<TokioRuntimeProvider>, ResolveError> {
        let transport = &self.transport;
        let provider = TokioRuntimeProvider::new();
        let timeout = transport.request_timeout;
        // Each connection runs in a task of its own, which ends when the last handle of its
        // client is gone.
        let client = match &transport.encryption {
            None => {
                let stream = UdpClientStream::builder(self.address, provider)
                    .with_timeout(Some(timeout))
                    .with_bind_addr(transport.bind)
                    .build();
                spawn_client(stream)
            }
            Some(Encryption {
                protocol: DnsProtocol::Tls,
                tls_name,
                tls,
            }) => {
                let server_name = ServerName::try_from(tls_name.clone())
                    .map_err(|_| ResolveError::Driver(DriverError::BadName))?;
                let (stream, handle) = tls_client_connect_with_bind_addr(
                    self.address,
                    transport.bind,
                    server_name,
                    tls.clone(),
                    provider,
                );
                let stream = stream.await.map_err(error_of)?;
                let (client, background) = Client::with_timeout(stream, handle, timeout);
                tokio::spawn(background);
                client
            }
            Some(Encryption {
                protocol: DnsProtocol::Https,
                tls_name,
                tls,
            }) => {
                let mut builder = HttpsClientStream::builder(tls.clone(), provider);
                builder.request_timeout(timeout);
                if let Some(bind) = transport.bind {
                    builder.bind_addr(bind);
                }
                let stream = builder
                    .build(self.address, tls_name.as_str().into(), DOH_PATH.into())
                    .await
                    .map_err(error_of)?;
                spawn_client(stream)
            }
            // hickory sets the protocol's ALPN ("h3", "doq") on its copy of the config.
            Some(Encryption {
                protocol: DnsProtocol::H3,
                tls_name,
                tls,
            }) => {
                let mut builder = H3ClientStream::builder()
                    .crypto_config((**tls).clone())
                    .request_timeout(timeout);
                if let Some(bind) = transport.bind {
                    builder = builder.bind_addr(bind);
                }
                let stream = builder
                    .build(self.address, tls_name.as_str().into(), DOH_PATH.into())
                    .await
                    .map_err(error_of)?;
                spawn_client(stream)
            }
            Some(Encryption {
                protocol: DnsProtocol::Quic,
                tls_name,
                tls,
            }) => {
                let mut builder = QuicClientStream::builder()
                    .crypto_config((**tls).clone())
                    .request_timeout(timeout);
                if let Some(bind) = transport.bind {
                    builder = builder.bind_addr(bind);
                }
                let stream = builder
                    .build(self.address, tls_name.as_str().into())
                    .await
                    .map_err(error_of)?;
                spawn_client(stream)
            }
        };
        Ok(client)
    }
}

/// A client over `sender`, its exchange running in a task of its own.
fn spawn_client<S: DnsRequestSender>(sender: S) -> Client<TokioRuntimeProvider> {
    let (client, background) = Client::from_sender(sender);
    tokio::spawn(background);
    client
}

/// hickory reports some answers as errors: a negative answer is still the server's answer.
fn answer_of_error(error: NetError) -> Result<Message, ResolveError> {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            let mut message = Message::query();
            message.metadata.response_code = no_records.response_code;
            Ok(message)
        }
        other => Err(error_of(other)),
    }
}

fn error_of(error: NetError) -> ResolveError {
    match error {
        NetError::Timeout => ResolveError::Driver(DriverError::Timeout),
        NetError::Dns(DnsError::ResponseCode(code)) => error_of_code(code).unwrap_or(
            ResolveError::Driver(DriverError::Internal(code.to_string())),
        ),
        NetError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            ResolveError::Driver(DriverError::ConnRefused)
        }
        NetError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            ResolveError::Driver(DriverError::Timeout)
        }
        NetError::Proto(e) => ResolveError::Driver(DriverError::Internal(e.to_string())),
        other => ResolveError::Driver(DriverError::Internal(other.to_string())),
    }
}

fn error_of_code(code: ResponseCode) -> Option<ResolveError> {
    match code {
        ResponseCode::NoError => None,
        ResponseCode::NXDomain => Some(ResolveError::Server(ServerError::NotFound)),
        ResponseCode::ServFail => Some(ResolveError::Server(ServerError::ServFail)),
        ResponseCode::FormErr => Some(ResolveError::Server(ServerError::FormErr)),
        ResponseCode::NotImp => Some(ResolveError::Server(ServerError::NotImp)),
        ResponseCode::Refused => Some(ResolveError::Server(ServerError::Refused)),
        other => Some(ResolveError::Driver(DriverError::Internal(format!(
            "answer code {other}"
        )))),
    }
}
