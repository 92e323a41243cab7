//! HTTP/1.x heads and message framing for the forward proxy (RFC 9112), on top of `httparse`.
//!
//! The worker's `http_proxy` server fills a buffer and calls [`parse_request`]; it then decides
//! where the body ends with [`RequestHead::body_framing`] and relays chunked bodies byte for byte
//! while [`ChunkedTracker`] watches for their end. Heads sent on are rebuilt by
//! [`write_request_head`] and [`write_response_head`], which drop hop-by-hop headers.

use crate::{HostPort, Parsed};

/// The most header lines a head may carry; more is answered with 431.
pub const MAX_HEADERS: usize = 128;

/// A head's header lines: the names in one buffer and the values in another, so a parsed
/// head costs three allocations however many lines it has (a copy per name and value cost
/// a busy proxy more than the parsing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    names: String,
    values: Vec<u8>,
    /// Where each line's name ends in `names` and its value ends in `values` (each starts
    /// where the line before ended).
    lines: Vec<(u32, u32)>,
}

/// One header line of a [`Headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl Headers {
    fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.lines
            .push((self.names.len() as u32, self.values.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Header<'_>> + '_ {
        (0..self.lines.len()).map(|i| {
            let (name_start, value_start) = match i {
                0 => (0, 0),
                _ => self.lines[i - 1],
            };
            let (name_end, value_end) = self.lines[i];
            Header {
                name: &self.names[name_start as usize..name_end as usize],
                value: &self.values[value_start as usize..value_end as usize],
            }
        })
    }
}

impl<'a> FromIterator<Header<'a>> for Headers {
    fn from_iter<I: IntoIterator<Item = Header<'a>>>(lines: I) -> Headers {
        let mut headers = Headers::default();
        for line in lines {
            headers.push(line.name, line.value);
        }
        headers
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Headers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub minor_version: u8,
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
}

/// Where a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Only for responses: the body runs until the upstream closes.
    UntilClose,
}

/// Where a request goes, as its request-target says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`.
    Tunnel(HostPort),
    /// `GET http://host[:port]/path`: `path` is the origin-form to send upstream. With
    /// `tls`, the client asked for `https://` in plain text (https forward): the proxy speaks
    /// TLS to the origin.
    Forward {
        upstream: HostPort,
        path: String,
        tls: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    #[error("too many header lines")]
    TooManyHeaders,
    #[error("unsupported http version")]
    UnsupportedVersion,
    #[error("invalid request target")]
    InvalidTarget,
    #[error("unsupported scheme in request target")]
    UnsupportedScheme,
    #[error("invalid content-length")]
    InvalidContentLength,
    #[error("request carries both transfer-encoding and content-length")]
    ConflictingFraming,
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
}

fn map_httparse(error: httparse::Error) -> HeadError {
    match error {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::UnsupportedVersion,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
        httparse::Error::Token => HeadError::Malformed("invalid token"),
    }
}

fn copy_headers(headers: &[httparse::Header<'_>]) -> Headers {
    let mut copy = Headers {
        names: String::with_capacity(headers.iter().map(|h| h.name.len()).sum()),
        values: Vec::with_capacity(headers.iter().map(|h| h.value.len()).sum()),
        lines: Vec::with_capacity(headers.len()),
    };
    for h in headers {
        copy.push(h.name, h.value);
    }
    copy
}

/// Parses a request head from the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf).map_err(map_httparse)? {
        httparse::Status::Partial => Ok(Parsed::Partial),
        httparse::Status::Complete(used) => {
            // Two Host headers give two readings of where the request goes (RFC 9112 3.2).
            let hosts = request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .count();
            if hosts > 1 {
                return Err(HeadError::Malformed("more than one host header"));
            }
            // httparse only returns Complete with method, path and version set.
            let head = RequestHead {
                method: request.method.unwrap_or_default().to_string(),
                target: request.path.unwrap_or_default().to_string(),
                minor_version: request.version.unwrap_or_default(),
                headers: copy_headers(request.headers),
            };
            Ok(Parsed::Complete(head, used))
        }
    }
}

/// Parses a response head from the start of `buf`.
pub fn parse_response(buf: &[u8]) -> Result<Parsed<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf).map_err(map_httparse)? {
        httparse::Status::Partial => Ok(Parsed::Partial),
        httparse::Status::Complete(used) => {
            if response.code.unwrap_or_default() < 100 {
                return Err(HeadError::Malformed("status code below 100"));
            }
            let head = ResponseHead {
                minor_version: response.version.unwrap_or_default(),
                code: response.code.unwrap_or_default(),
                reason: response.reason.unwrap_or_default().to_string(),
                headers: copy_headers(response.headers),
            };
            Ok(Parsed::Complete(head, used))
        }
    }
}

/// Every value of the header `name` (any case), with no allocation: this runs several
/// times for every request.
fn header_values<'a, 'n>(
    headers: &'a Headers,
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Comma-separated tokens of every header line called `name`, trimmed.
fn header_tokens<'a, 'n>(
    headers: &'a Headers,
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    header_values(headers, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Keep-alive as the peer asked for it: HTTP/1.1 unless `close`, HTTP/1.0 only with `keep-alive`.
/// Proxy clients still send `Proxy-Connection`, so it counts as `Connection`.
fn wants_keep_alive(minor_version: u8, headers: &Headers) -> bool {
    let says = |token| {
        has_token(headers, "connection", token) || has_token(headers, "proxy-connection", token)
    };
    if minor_version == 0 {
        says("keep-alive")
    } else {
        !says("close")
    }
}

fn content_length(headers: &Headers) -> Result<Option<u64>, HeadError> {
    let mut found = None;
    for value in header_values(headers, "content-length") {
        // A list such as `5, 5` is allowed when every member is equal (RFC 9110 8.6).
        for part in value.split(|&b| b == b',') {
            let text = std::str::from_utf8(part.trim_ascii())
                .map_err(|_| HeadError::InvalidContentLength)?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::InvalidContentLength);
            }
            let length: u64 = text.parse().map_err(|_| HeadError::InvalidContentLength)?;
            if found.is_some_and(|previous| previous != length) {
                return Err(HeadError::InvalidContentLength);
            }
            found = Some(length);
        }
    }
    Ok(found)
}

/// Whether transfer-encoding ends in `chunked`; any other coding we cannot frame. A
/// transfer-encoding header with no coding in it is refused: peers disagree on what it means.
fn is_chunked(headers: &Headers) -> Result<Option<bool>, HeadError> {
    let codings: Vec<&[u8]> = header_tokens(headers, "transfer-encoding").collect();
    if codings.is_empty() && header_values(headers, "transfer-encoding").next().is_some() {
        return Err(HeadError::UnsupportedTransferEncoding);
    }
    // Chunked is applied once and last (RFC 9112 6.1): anywhere else, parsers disagree on
    // where the body ends.
    if let Some((_, before)) = codings.split_last()
        && before.iter().any(|c| c.eq_ignore_ascii_case(b"chunked"))
    {
        return Err(HeadError::UnsupportedTransferEncoding);
    }
    match codings.last() {
        None => Ok(None),
        Some(last) if last.eq_ignore_ascii_case(b"chunked") => Ok(Some(true)),
        Some(_) => Ok(Some(false)),
    }
}

/// A user name and password from HTTP Basic credentials (RFC 7617).
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, wherever this ends up printed.
        write!(f, "BasicCredentials({:?})", self.user)
    }
}

/// Reads an `Authorization` / `Proxy-Authorization` value: `Ok(None)` for a scheme other
/// than Basic (no credentials we know), an error for Basic credentials that do not decode
/// (not base64, not UTF-8, no `:`). The password may hold `:`; the name ends at the first.
pub fn basic_credentials(value: &[u8]) -> Result<Option<BasicCredentials>, HeadError> {
    let bad = || HeadError::Malformed("malformed basic credentials");
    let value = value.trim_ascii();
    let (scheme, token) = match value.iter().position(|b| *b == b' ') {
        Some(at) => (&value[..at], value[at + 1..].trim_ascii()),
        None => return Err(bad()),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let token = std::str::from_utf8(token).map_err(|_| bad())?;
    let decoded = crate::base64::decode(token).ok_or_else(bad)?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    }))
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_values(&self.headers, name).next()
    }

    /// Every value of the header `name`, in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        header_values(&self.headers, name)
    }

    pub fn keep_alive(&self) -> bool {
        wants_keep_alive(self.minor_version, &self.headers)
    }

    /// `Expect: 100-continue` from an HTTP/1.1 client.
    pub fn expects_continue(&self) -> bool {
        self.minor_version == 1
            && header_values(&self.headers, "expect")
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }

    /// The same request without its `Expect` header, for a proxy that answered it itself.
    pub fn without_expect(&self) -> RequestHead {
        let headers = self
            .headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("expect"))
            .collect();
        RequestHead {
            headers,
            ..self.clone()
        }
    }

    pub fn is_connect(&self) -> bool {
        self.method.eq_ignore_ascii_case("CONNECT")
    }

    /// Where the request body ends. A request with both framings is refused rather than
    /// guessed at, since the two readings are how request smuggling works.
    pub fn body_framing(&self) -> Result<BodyFraming, HeadError> {
        let length = content_length(&self.headers)?;
        match is_chunked(&self.headers)? {
            Some(_) if length.is_some() => Err(HeadError::ConflictingFraming),
            // HTTP/1.0 has no transfer codings; RFC 9112 6.1 calls such framing faulty.
            Some(_) if self.minor_version == 0 => Err(HeadError::UnsupportedTransferEncoding),
            Some(true) => Ok(BodyFraming::Chunked),
            Some(false) => Err(HeadError::UnsupportedTransferEncoding),
            None => Ok(match length {
                Some(0) | None => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
            }),
        }
    }

    /// Reads the request-target of a proxy request: an authority for CONNECT, an absolute
    /// `http://` URI otherwise.
    pub fn proxy_target(&self) -> Result<RequestTarget, HeadError> {
        if self.is_connect() {
            let upstream =
                HostPort::parse_authority(&self.target, None).ok_or(HeadError::InvalidTarget)?;
            return Ok(RequestTarget::Tunnel(upstream));
        }
        let Some(scheme_end) = self.target.find("://") else {
            return Err(HeadError::InvalidTarget);
        };
        let scheme = &self.target[..scheme_end];
        let tls = if scheme.eq_ignore_ascii_case("http") {
            false
        } else if scheme.eq_ignore_ascii_case("https") {
            true
        } else {
            return Err(HeadError::UnsupportedScheme);
        };
        let rest = &self.target[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        // Credentials in the URI are not ours to pass on, and `@` makes authorities ambiguous.
        if authority.contains('@') {
            return Err(HeadError::InvalidTarget);
        }
        let default_port = if tls { 443 } else { 80 };
        let upstream = HostPort::parse_authority(authority, Some(default_port))
            .ok_or(HeadError::InvalidTarget)?;
        // The fragment is the client's own business; an empty path is `/`.
        let path = match rest[authority_end..].split('#').next().unwrap_or_default() {
            "" => "/".to_string(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_string(),
        };
        Ok(RequestTarget::Forward {
            upstream,
            path,
            tls,
        })
    }
}

impl ResponseHead {
    pub fn keep_alive(&self) -> bool {
        wants_keep_alive(self.minor_version, &self.headers)
    }

    /// Where the response body ends, given the method of the request it answers.
    pub fn body_framing(&self, request_method: &str) -> Result<BodyFraming, HeadError> {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.code)
            || self.code == 204
            || self.code == 304
        {
            return Ok(BodyFraming::Empty);
        }
        match is_chunked(&self.headers)? {
            // HTTP/1.0 has no transfer codings (RFC 9112 6.1): relaying its body either way
            // would hand the client bytes it cannot read.
            Some(_) if self.minor_version == 0 => {
                return Err(HeadError::UnsupportedTransferEncoding);
            }
            // Transfer-encoding overrides any content-length (RFC 9112 6.3).
            Some(true) => return Ok(BodyFraming::Chunked),
            Some(false) => return Ok(BodyFraming::UntilClose),
            None => {}
        }
        Ok(match content_length(&self.headers)? {
            Some(0) => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        })
    }
}

/// Headers that describe one hop and are never passed on (RFC 9110 7.6.1), plus the proxy
/// credentials that were meant for us.
fn is_hop_by_hop(name: &str, connection_listed: &[&[u8]]) -> bool {
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ];
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_listed
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(name.as_bytes()))
}

/// Headers the proxy always writes itself, from what it decided: the framing it will relay
/// and the authority it connects to. The peer's copies are never passed on, so neither a
/// `Connection:` list nor duplicates can make the next hop read the message differently.
fn is_written_by_us(name: &str) -> bool {
    ["content-length", "transfer-encoding", "host"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// `also_drop`: a header the proxy consumed itself (a gateway's `Authorization`).
fn write_end_to_end_headers(headers: &Headers, also_drop: Option<&str>, out: &mut Vec<u8>) {
    let listed: Vec<&[u8]> = header_tokens(headers, "connection").collect();
    for header in headers.iter().filter(|h| {
        !is_written_by_us(h.name)
            && !is_hop_by_hop(h.name, &listed)
            && also_drop.is_none_or(|name| !h.name.eq_ignore_ascii_case(name))
    }) {
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the framing header for `framing`: one `Content-Length`, or one `Transfer-Encoding`
/// with the message's codings joined. An empty body keeps an explicit `Content-Length` the
/// peer sent (`0`, or a HEAD response's size).
fn write_framing(headers: &Headers, framing: BodyFraming, out: &mut Vec<u8>) {
    let length = |n: u64, out: &mut Vec<u8>| {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    match framing {
        BodyFraming::Length(n) => length(n, out),
        BodyFraming::Empty => {
            if let Ok(Some(n)) = content_length(headers) {
                length(n, out);
            }
        }
        // Chunked, or framed by the close: either way the codings (gzip, say) describe the
        // bytes that follow, so they go on, joined on one line.
        BodyFraming::Chunked | BodyFraming::UntilClose => {
            let mut codings = header_tokens(headers, "transfer-encoding").peekable();
            if codings.peek().is_some() {
                out.extend_from_slice(b"Transfer-Encoding: ");
                for (i, coding) in codings.enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(coding);
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// How a forwarded request goes out: where, framed how, and in which form. (No `Debug`: the
/// extra headers carry credentials.)
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The origin-form path (`/x?y`).
    pub path: &'a str,
    pub upstream: &'a HostPort,
    /// Whether the origin is spoken to over TLS (`https`).
    pub tls: bool,
    /// Absolute form (`GET http://host:port/path`), for a next-hop proxy.
    pub absolute_form: bool,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    /// Lines the proxy adds, each ending in CRLF (`Proxy-Authorization` for a next hop).
    pub extra_headers: &'a [u8],
    /// The `Host` value to send in origin form instead of the upstream's authority: a
    /// reverse proxy passes on the client's.
    pub host: Option<&'a [u8]>,
    /// A header (its lower-case name) to leave out because it was for this proxy:
    /// `authorization` at a gateway with users, a path-selection header at a forward proxy.
    pub consumed_header: Option<&'a str>,
}

/// Writes the head to send upstream for a forwarded request: the target in origin form (or
/// absolute form for a next-hop proxy), the client's HTTP version, `Host` from the
/// request-target's authority (RFC 9112 3.2.2), end-to-end headers, the framing the proxy will
/// relay, and its own connection choice.
pub fn write_request_head(head: &RequestHead, outgoing: &Outgoing<'_>, out: &mut Vec<u8>) {
    let default_port = if outgoing.tls { 443 } else { 80 };
    let upstream = outgoing.upstream;
    let authority = if upstream.port == default_port {
        upstream.host.to_string()
    } else {
        upstream.to_string()
    };
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    if outgoing.absolute_form {
        out.extend_from_slice(if outgoing.tls {
            b"https://"
        } else {
            b"http://"
        });
        out.extend_from_slice(authority.as_bytes());
    }
    out.extend_from_slice(outgoing.path.as_bytes());
    out.extend_from_slice(if head.minor_version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    out.extend_from_slice(b"Host: ");
    match outgoing.host {
        Some(host) if !outgoing.absolute_form => out.extend_from_slice(host),
        _ => out.extend_from_slice(authority.as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    write_end_to_end_headers(&head.headers, outgoing.consumed_header, out);
    // After the client's: a `Via` or `X-Forwarded-For` of ours comes last in its list.
    out.extend_from_slice(outgoing.extra_headers);
    write_framing(&head.headers, outgoing.framing, out);
    out.extend_from_slice(if outgoing.keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

/// Writes the head to send back to the client: its HTTP version, end-to-end headers, the
/// lines the proxy adds (`extra_headers`, each ending in CRLF), the framing the proxy will
/// relay, and its own connection choice (`close` while draining or when the body runs until
/// close).
pub fn write_response_head(
    head: &ResponseHead,
    client_minor_version: u8,
    framing: BodyFraming,
    keep_alive: bool,
    extra_headers: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(if client_minor_version == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(head.code.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_end_to_end_headers(&head.headers, None, out);
    out.extend_from_slice(extra_headers);
    write_framing(&head.headers, framing, out);
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    InvalidSize,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("chunk extension or trailer too long")]
    TooLong,
    #[error("control byte or bare line feed in a trailer")]
    InvalidTrailer,
}

/// Bytes no chunk extension or trailer line may hold: a bare LF ends a line for some parsers
/// and not for others, which is how chunked smuggling works.
fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size {
        digits: u8,
    },
    /// Whitespace after the size: only more of it, `;` or the line end may follow.
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Watches a chunked body pass through unchanged and says where it ends (RFC 9112 7.1).
#[derive(Debug, Clone)]
pub struct ChunkedTracker {
    state: ChunkState,
    size: u64,
    remaining: u64,
    side_bytes: usize,
}

/// Bytes of chunk extensions and trailers we accept in one body.
const MAX_CHUNK_SIDE_BYTES: usize = 64 * 1024;

impl Default for ChunkedTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedTracker {
    pub fn new() -> Self {
        ChunkedTracker {
            state: ChunkState::Size { digits: 0 },
            size: 0,
            remaining: 0,
            side_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes as much of `input` as belongs to the body; returns how many bytes that was.
    /// When fewer than `input.len()` are used, the body has ended.
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                let take = (self.remaining.min((input.len() - used) as u64)) as usize;
                used += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let byte = input[used];
            used += 1;
            self.state = self.step(byte)?;
        }
        Ok(used)
    }

    fn count_side_byte(&mut self) -> Result<(), ChunkError> {
        self.side_bytes += 1;
        if self.side_bytes > MAX_CHUNK_SIDE_BYTES {
            Err(ChunkError::TooLong)
        } else {
            Ok(())
        }
    }

    fn step(&mut self, byte: u8) -> Result<ChunkState, ChunkError> {
        use ChunkState::*;
        Ok(match self.state {
            Size { digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 16 => {
                    let value = (byte as char).to_digit(16).unwrap_or_default() as u64;
                    self.size = (self.size << 4) | value;
                    Size { digits: digits + 1 }
                }
                b';' if digits > 0 => Extension,
                b' ' | b'\t' if digits > 0 => SizeSpace,
                b'\r' if digits > 0 => SizeLf,
                _ => return Err(ChunkError::InvalidSize),
            },
            SizeSpace => {
                self.count_side_byte()?;
                match byte {
                    b' ' | b'\t' => SizeSpace,
                    b';' => Extension,
                    b'\r' => SizeLf,
                    _ => return Err(ChunkError::InvalidSize),
                }
            }
            Extension => {
                self.count_side_byte()?;
                match byte {
                    b'\r' => SizeLf,
                    _ if is_control(byte) => return Err(ChunkError::InvalidSize),
                    _ => Extension,
                }
            }
            SizeLf => {
                if byte != b'\n' {
                    return Err(ChunkError::InvalidSize);
                }
                if self.size == 0 {
                    TrailerLineStart
                } else {
                    self.remaining = self.size;
                    self.size = 0;
                    Data
                }
            }
            DataCr if byte == b'\r' => DataLf,
            DataLf if byte == b'\n' => Size { digits: 0 },
            DataCr | DataLf => return Err(ChunkError::MissingCrlf),
            TrailerLineStart if byte == b'\r' => TrailerLf { last: true },
            TrailerLineStart | TrailerLine => {
                self.count_side_byte()?;
                match byte {
                    b'\r' => TrailerLf { last: false },
                    _ if is_control(byte) => return Err(ChunkError::InvalidTrailer),
                    _ => TrailerLine,
                }
            }
            TrailerLf { last } => match (byte, last) {
                (b'\n', true) => Done,
                (b'\n', false) => TrailerLineStart,
                _ => return Err(ChunkError::MissingCrlf),
            },
            Data | Done => unreachable!("handled by advance"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Host;

    fn request(text: &str) -> RequestHead {
        match parse_request(text.as_bytes()) {
            Ok(Parsed::Complete(head, used)) => {
                assert_eq!(used, text.len());
                head
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let text = b"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\nX: 1\r\n\r\n";
        for cut in 0..text.len() {
            assert_eq!(
                parse_request(&text[..cut]),
                Ok(Parsed::Partial),
                "prefix {cut}"
            );
        }
        assert!(matches!(parse_request(text), Ok(Parsed::Complete(_, n)) if n == text.len()));
    }

    #[test]
    fn proxy_targets() {
        let check = |line: &str, want: Result<(&str, &str), HeadError>| {
            let head = request(&format!("{line} HTTP/1.1\r\n\r\n"));
            let got = head.proxy_target().map(|t| match t {
                RequestTarget::Tunnel(hp) => (hp.to_string(), String::new()),
                RequestTarget::Forward {
                    upstream,
                    path,
                    tls,
                } => (
                    upstream.to_string(),
                    if tls { format!("tls {path}") } else { path },
                ),
            });
            let want = want.map(|(a, b)| (a.to_string(), b.to_string()));
            assert_eq!(got, want, "{line}");
        };
        check("GET http://a.example/x?y", Ok(("a.example:80", "/x?y")));
        check("GET http://a.example", Ok(("a.example:80", "/")));
        check("GET http://a.example?q=1", Ok(("a.example:80", "/?q=1")));
        check("GET HTTP://[::1]:8080/p#frag", Ok(("[::1]:8080", "/p")));
        check("GET http://a.example#frag", Ok(("a.example:80", "/")));
        check("GET http://a.example?q#frag", Ok(("a.example:80", "/?q")));
        check("CONNECT a.example:443", Ok(("a.example:443", "")));
        check("CONNECT a.example", Err(HeadError::InvalidTarget));
        check("GET /x", Err(HeadError::InvalidTarget));
        check("GET ftp://a.example/", Err(HeadError::UnsupportedScheme));
        check("GET https://a.example/s", Ok(("a.example:443", "tls /s")));
        check("GET http://user@a.example/", Err(HeadError::InvalidTarget));
    }

    #[test]
    fn request_framing() {
        let check = |headers: &str, want: Result<BodyFraming, HeadError>| {
            let head = request(&format!("POST http://a/ HTTP/1.1\r\n{headers}\r\n"));
            assert_eq!(head.body_framing(), want, "{headers}");
        };
        check("", Ok(BodyFraming::Empty));
        check("Content-Length: 0\r\n", Ok(BodyFraming::Empty));
        check("Content-Length: 12\r\n", Ok(BodyFraming::Length(12)));
        check("Content-Length: 12, 12\r\n", Ok(BodyFraming::Length(12)));
        check(
            "Content-Length: 12\r\nContent-Length: 13\r\n",
            Err(HeadError::InvalidContentLength),
        );
        check(
            "Content-Length: -1\r\n",
            Err(HeadError::InvalidContentLength),
        );
        check(
            "Transfer-Encoding: gzip, chunked\r\n",
            Ok(BodyFraming::Chunked),
        );
        check(
            "Transfer-Encoding: gzip\r\n",
            Err(HeadError::UnsupportedTransferEncoding),
        );
        check(
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            Err(HeadError::ConflictingFraming),
        );
    }

    #[test]
    fn response_framing_and_keep_alive() {
        let response = |text: &str| match parse_response(text.as_bytes()) {
            Ok(Parsed::Complete(head, _)) => head,
            other => panic!("{other:?}"),
        };
        let ok = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(ok.body_framing("GET"), Ok(BodyFraming::Length(5)));
        assert_eq!(ok.body_framing("HEAD"), Ok(BodyFraming::Empty));
        assert!(ok.keep_alive());
        let close = response("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(close.body_framing("GET"), Ok(BodyFraming::UntilClose));
        assert!(!close.keep_alive());
        let no_content = response("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        assert_eq!(no_content.body_framing("GET"), Ok(BodyFraming::Empty));
        assert!(!no_content.keep_alive());
    }

    #[test]
    fn forwarded_head_drops_hop_by_hop_headers() {
        let head = request(
            "GET http://a.example:81/x HTTP/1.1\r\nProxy-Connection: keep-alive\r\nConnection: x-secret\r\nX-Secret: 1\r\nProxy-Authorization: Basic Zm9v\r\nAccept: */*\r\n\r\n",
        );
        let upstream = HostPort {
            host: Host::Domain("a.example".into()),
            port: 81,
        };
        let mut out = Vec::new();
        let mut outgoing = Outgoing {
            path: "/x",
            upstream: &upstream,
            tls: false,
            absolute_form: false,
            framing: BodyFraming::Empty,
            keep_alive: true,
            extra_headers: b"",
            host: None,
            consumed_header: None,
        };
        write_request_head(&head, &outgoing, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: a.example:81\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
        );
        // Toward a next-hop proxy: absolute form, and our own credentials, never the client's.
        outgoing.absolute_form = true;
        outgoing.extra_headers = b"Proxy-Authorization: Basic dTpw\r\n";
        let mut out = Vec::new();
        write_request_head(&head, &outgoing, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET http://a.example:81/x HTTP/1.1\r\nHost: a.example:81\r\nAccept: */*\r\nProxy-Authorization: Basic dTpw\r\nConnection: keep-alive\r\n\r\n"
        );
        // A reverse proxy passes the client's Host on in origin form (and only there).
        outgoing.host = Some(b"www.example.net");
        let mut out = Vec::new();
        write_request_head(&head, &outgoing, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\r\nHost: a.example:81\r\n")
        );
        outgoing.absolute_form = false;
        outgoing.extra_headers = b"Via: 1.1 gw\r\n";
        let mut out = Vec::new();
        write_request_head(&head, &outgoing, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: www.example.net\r\nAccept: */*\r\nVia: 1.1 gw\r\nConnection: keep-alive\r\n\r\n"
        );
        outgoing.host = None;
        outgoing.absolute_form = true;
        let https = HostPort {
            host: Host::Domain("a.example".into()),
            port: 443,
        };
        outgoing.upstream = &https;
        outgoing.tls = true;
        outgoing.extra_headers = b"";
        let mut out = Vec::new();
        write_request_head(&head, &outgoing, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("GET https://a.example/x HTTP/1.1\r\nHost: a.example\r\n")
        );
    }

    /// What the origin sees is what the proxy relays: framing headers are written from the
    /// proxy's decision, whatever the client listed in `Connection:` or wrote twice.
    #[test]
    fn framing_and_host_are_never_ambiguous_upstream() {
        let check = |text: &str, want: Result<&str, HeadError>| {
            let result = parse_request(text.as_bytes()).and_then(|parsed| {
                let Parsed::Complete(head, _) = parsed else {
                    panic!("{text:?} is partial");
                };
                let framing = head.body_framing()?;
                let RequestTarget::Forward {
                    upstream,
                    path,
                    tls,
                } = head.proxy_target()?
                else {
                    panic!("{text:?} is no forward request");
                };
                let mut out = Vec::new();
                let outgoing = Outgoing {
                    path: &path,
                    upstream: &upstream,
                    tls,
                    absolute_form: false,
                    framing,
                    keep_alive: true,
                    extra_headers: b"",
                    host: None,
                    consumed_header: None,
                };
                write_request_head(&head, &outgoing, &mut out);
                Ok(String::from_utf8(out).unwrap())
            });
            assert_eq!(result.as_deref().map_err(Clone::clone), want, "{text:?}");
        };
        check(
            "POST http://o/ HTTP/1.1\r\nHost: o\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
            Ok("POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"),
        );
        check(
            "POST http://o/ HTTP/1.1\r\nConnection: transfer-encoding, host\r\nHost: evil\r\nTransfer-Encoding: gzip,chunked\r\n\r\n",
            Ok(
                "POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive\r\n\r\n",
            ),
        );
        check(
            "POST http://o:8080/ HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            Ok(
                "POST / HTTP/1.1\r\nHost: o:8080\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            ),
        );
        check(
            "POST http://o/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            Ok("POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"),
        );
        check(
            "GET http://o/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Err(HeadError::Malformed("more than one host header")),
        );
        check(
            "POST http://o/ HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\n",
            Err(HeadError::UnsupportedTransferEncoding),
        );
        check(
            "POST http://o/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(HeadError::UnsupportedTransferEncoding),
        );
        // Chunked twice, or before another coding (found by the h11 differential test).
        check(
            "POST http://o/ HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            Err(HeadError::UnsupportedTransferEncoding),
        );
        check(
            "POST http://o/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Err(HeadError::UnsupportedTransferEncoding),
        );
    }

    #[test]
    fn responses_carry_one_framing_header() {
        let relay = |text: &str| {
            let Ok(Parsed::Complete(head, _)) = parse_response(text.as_bytes()) else {
                panic!("{text:?}");
            };
            let framing = head.body_framing("GET").unwrap();
            let mut out = Vec::new();
            write_response_head(&head, 1, framing, true, b"", &mut out);
            (framing, String::from_utf8(out).unwrap())
        };
        assert_eq!(
            relay("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (
                BodyFraming::Chunked,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
                    .into()
            )
        );
        assert_eq!(
            relay("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n"),
            (
                BodyFraming::Length(2),
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n".into()
            )
        );
        let Ok(Parsed::Complete(old, _)) =
            parse_response(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else {
            panic!("parses");
        };
        assert_eq!(
            old.body_framing("GET"),
            Err(HeadError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            relay("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (
                BodyFraming::UntilClose,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n"
                    .into()
            )
        );
    }

    #[test]
    fn header_lines_share_one_buffer_and_keep_their_order() {
        let head = request("GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nAccept: */*\r\n\r\n");
        let lines: Vec<(&str, &[u8])> = head.headers.iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(
            lines,
            [("Host", &b"a"[..]), ("X-Empty", b""), ("Accept", b"*/*")]
        );
        assert_eq!(
            head.headers.iter().next_back().map(|h| h.name),
            Some("Accept")
        );
        assert_eq!(head.header("accept"), Some(&b"*/*"[..]));
    }

    #[test]
    fn expect_continue_is_seen_and_can_be_dropped() {
        let head =
            request("POST http://a/ HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(head.expects_continue());
        assert!(!head.without_expect().expects_continue());
        assert_eq!(head.without_expect().headers.len(), 1);
        let old = request("POST http://a/ HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(
            !old.expects_continue(),
            "HTTP/1.0 clients do not expect interim answers"
        );
    }

    fn run_chunked(body: &[u8], step: usize) -> Result<usize, ChunkError> {
        let mut tracker = ChunkedTracker::new();
        let mut offset = 0;
        while offset < body.len() && !tracker.is_done() {
            let end = (offset + step).min(body.len());
            offset += tracker.advance(&body[offset..end])?;
        }
        Ok(if tracker.is_done() {
            offset
        } else {
            usize::MAX
        })
    }

    #[test]
    fn chunked_bodies_end_where_they_should_at_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for step in 1..body.len() {
            assert_eq!(run_chunked(body, step), Ok(end), "step {step}");
        }
        assert_eq!(run_chunked(b"0\r\n\r\n", 1), Ok(5));
        assert_eq!(
            run_chunked(b"5\r\nhelloXX", 3),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(run_chunked(b"zz\r\n", 3), Err(ChunkError::InvalidSize));
        assert_eq!(
            run_chunked(b"5 5\r\nhello\r\n0\r\n\r\n", 1),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(run_chunked(b"5 \t;x=1\r\nhello\r\n0\r\n\r\n", 1), Ok(21));
        // A bare LF or a control byte in an extension or trailer is refused, not passed on.
        assert_eq!(
            run_chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n", 1),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(
            run_chunked(b"5;a\x01\r\nhello\r\n0\r\n\r\n", 4),
            Err(ChunkError::InvalidSize)
        );
        assert_eq!(
            run_chunked(b"0\r\nX: 1\nY: 2\r\n\r\n", 2),
            Err(ChunkError::InvalidTrailer)
        );
        assert_eq!(
            run_chunked(b"11111111111111111\r\n", 3),
            Err(ChunkError::InvalidSize)
        );
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn basic_credentials_forms() {
        let token = crate::base64::encode(b"bob:pa:ss");
        let parsed = basic_credentials(format!("Basic {token}").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            (parsed.user.as_str(), parsed.password.as_str()),
            ("bob", "pa:ss")
        );
        assert!(!format!("{parsed:?}").contains("pa:ss"));
        assert!(
            basic_credentials(format!("bAsIc  {token} ").as_bytes())
                .unwrap()
                .is_some()
        );
        assert!(basic_credentials(b"Bearer abc").unwrap().is_none());
        assert!(basic_credentials(b"Basic").is_err());
        assert!(basic_credentials(b"Basic !!!!").is_err());
        let no_colon = crate::base64::encode(b"bob");
        assert!(basic_credentials(format!("Basic {no_colon}").as_bytes()).is_err());
    }
}
