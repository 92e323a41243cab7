//! Sans-IO protocol code for every g3proxy process: parsers and encoders that turn bytes into
//! meaning and back, with no sockets, no tokio and no clock.
//!
//! - [`base64`]: the encoding of HTTP Basic credentials.
//! - [`frame`]: length-prefixed frames that carry IPC messages between supervisor, workers and ctl.
//! - [`http1`]: HTTP/1.x request and response heads (on `httparse`), message framing and the
//!   chunked-body tracker used when relaying bodies byte for byte.
//! - [`ldap`]: an LDAP simple bind and its answer, to check passwords against a directory.
//! - [`msgpack`]: MessagePack values, for g3proxy's agent protocols (`route_query`).
//! - [`proxy_protocol`]: HAProxy's PROXY protocol header, versions 1 and 2.
//! - [`socks4`]: SOCKS4 and SOCKS4a requests and replies.
//! - [`socks5`]: the SOCKS5 greeting, request and reply (RFC 1928), and the UDP header.
//! - [`tls_hello`]: the TLS ClientHello's server name and ALPN, across records.
//!
//! Parsers take `&[u8]` and answer with the message and the bytes it used, `Partial` when they
//! need more, or a typed error. The worker's tokio adapters only fill buffers and call them.

pub mod base64;
pub mod checks;
pub mod frame;
pub mod http1;
pub mod ldap;
pub mod msgpack;
pub mod proxy_protocol;
pub mod socks4;
pub mod socks5;
pub mod tls_hello;

/// What a parser answers when its input may be a prefix of a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole message and how many input bytes it used.
    Complete(T, usize),
    /// The input is a valid prefix; read more and call again.
    Partial,
}

use std::fmt;
use std::net::IpAddr;

/// A destination host as a client named it: an address, or a domain left for a resolver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Domain(String),
}

/// A destination host and port, as taken from a CONNECT authority, an absolute URI or a SOCKS
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: Host,
    pub port: u16,
}

impl Host {
    /// Reads a host as it stands in a URI authority: `[v6]`, an IPv4 address or a domain.
    pub fn parse_uri_host(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[') {
            let v6 = inner.strip_suffix(']')?;
            return v6.parse().ok().map(Host::Ip);
        }
        if text.is_empty() || text.len() > 253 {
            return None;
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let valid = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        valid.then(|| Host::Domain(text.to_ascii_lowercase()))
    }
}

impl HostPort {
    /// Reads `host:port`, with `[v6]:port` for IPv6, taking `default_port` when none is given.
    pub fn parse_authority(text: &str, default_port: Option<u16>) -> Option<HostPort> {
        let (host_text, port) = match text.rfind(':') {
            Some(colon) if !text[colon..].contains(']') => {
                let port = text[colon + 1..].parse().ok()?;
                (&text[..colon], port)
            }
            _ => (text, default_port?),
        };
        let host = Host::parse_uri_host(host_text)?;
        Some(HostPort { host, port })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Domain(domain) => f.write_str(domain),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        let check = |text: &str, default: Option<u16>, want: Option<&str>| {
            let got = HostPort::parse_authority(text, default).map(|hp| hp.to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        };
        check("example.com:443", None, Some("example.com:443"));
        check("Example.COM", Some(80), Some("example.com:80"));
        check("[::1]:8080", None, Some("[::1]:8080"));
        check("[::1]", Some(80), Some("[::1]:80"));
        check("127.0.0.1:1", None, Some("127.0.0.1:1"));
        check("example.com", None, None);
        check("exa mple.com:80", None, None);
        check("host:99999", None, None);
        check("[::1:80", None, None);
        check(":80", None, None);
    }
}
