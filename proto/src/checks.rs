//! Properties every parser keeps on any input, however malformed: no panic, never more bytes
//! used than given, and a complete message stays complete (and only just) when re-read. The
//! fuzz targets in `proto/fuzz/` and the stable corpus and mutation tests call these same
//! functions, so an input that ever failed stays a regression test.

use crate::http1::{self, ChunkedTracker};
use crate::{Parsed, frame, proxy_protocol, socks4, socks5, tls_hello};

pub fn http1_request(data: &[u8]) {
    if let Ok(Parsed::Complete(head, used)) = http1::parse_request(data) {
        assert!(used <= data.len());
        assert_eq!(
            http1::parse_request(&data[..used]),
            Ok(Parsed::Complete(head.clone(), used))
        );
        assert!(!matches!(
            http1::parse_request(&data[..used - 1]),
            Ok(Parsed::Complete(..))
        ));
        let _ = head.body_framing();
        let _ = head.proxy_target();
        let _ = head.keep_alive();
        let mut out = Vec::new();
        if let (
            Ok(http1::RequestTarget::Forward {
                upstream,
                path,
                tls,
            }),
            Ok(framing),
        ) = (head.proxy_target(), head.body_framing())
        {
            let outgoing = http1::Outgoing {
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
            http1::write_request_head(&head.without_expect(), &outgoing, &mut out);
            // What we send upstream is itself a valid request head, framed as we decided.
            // (It may carry a few more lines than we accept from a client: Host, framing and
            // Connection are ours, so a head at our limit can come out past it.)
            match http1::parse_request(&out) {
                Ok(Parsed::Complete(sent, n)) if n == out.len() => {
                    assert_eq!(sent.body_framing(), Ok(framing));
                }
                Err(http1::HeadError::TooManyHeaders)
                    if head.headers.len() + 3 > http1::MAX_HEADERS => {}
                other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&out)),
            }
        }
    }
}

pub fn http1_response(data: &[u8]) {
    if let Ok(Parsed::Complete(head, used)) = http1::parse_response(data) {
        assert!(used <= data.len());
        let _ = head.body_framing("HEAD");
        if let Ok(framing) = head.body_framing("GET") {
            let mut out = Vec::new();
            http1::write_response_head(&head, 1, framing, true, b"", &mut out);
            match http1::parse_response(&out) {
                Ok(Parsed::Complete(sent, n)) if n == out.len() => {
                    // The client reads the body where we relay it.
                    if framing != http1::BodyFraming::UntilClose {
                        assert_eq!(sent.body_framing("GET"), Ok(framing));
                    }
                }
                Err(http1::HeadError::TooManyHeaders)
                    if head.headers.len() + 2 > http1::MAX_HEADERS => {}
                other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&out)),
            }
        }
    }
}

/// The tracker ends a body at the same byte whether it sees it whole or split at `data[0]`.
pub fn chunked(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut tracker = ChunkedTracker::new();
        tracker.advance(body).map(|used| (used, tracker.is_done()))
    };
    let split = (split as usize).min(body.len());
    let mut tracker = ChunkedTracker::new();
    let pieces = tracker.advance(&body[..split]).and_then(|first| {
        assert!(first <= split);
        if first < split || tracker.is_done() {
            return Ok((first, tracker.is_done()));
        }
        tracker
            .advance(&body[split..])
            .map(|second| (first + second, tracker.is_done()))
    });
    match (whole, pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} but split {b:?}"),
    }
}

pub fn socks5(data: &[u8]) {
    if let Ok(Parsed::Complete(_, used)) = socks5::parse_greeting(data) {
        assert!(used <= data.len());
    }
    if let Ok(Parsed::Complete(request, used)) = socks5::parse_request(data) {
        assert!(used <= data.len());
        let _ = request.target.to_string();
    }
    if let Ok((header, used)) = socks5::parse_udp_header(data) {
        assert!(used <= data.len());
        let _ = header.target.to_string();
    }
    if let Ok(Parsed::Complete(credentials, used)) = socks5::parse_user_password(data) {
        assert_eq!(
            used,
            3 + credentials.user.len() + credentials.password.len()
        );
        assert!(used <= data.len());
    }
    // A next hop's reply: its length is known from its first five bytes, and a whole one
    // parses from exactly that many.
    if let Some(first) = data.get(..5).and_then(|b| <[u8; 5]>::try_from(b).ok())
        && let Ok(rest) = socks5::reply_rest_len(first)
        && let Some(reply) = data.get(..5 + rest)
        && let Ok((_, bound)) = socks5::parse_reply(reply)
    {
        let _ = bound.to_string();
    }
    // Basic credentials come from a header value: any bytes decode or are refused.
    let _ = crate::http1::basic_credentials(data);
}

/// An LDAP server's answer to a bind: never more used than given nor than the size cap, and
/// a complete answer re-reads the same from exactly its bytes.
pub fn ldap(data: &[u8]) {
    if let Ok(Parsed::Complete(answer, used)) = crate::ldap::parse_bind_response(data, 256) {
        assert!(used <= data.len() && used <= 256);
        assert_eq!(
            crate::ldap::parse_bind_response(&data[..used], 256),
            Ok(Parsed::Complete(answer, used))
        );
    }
}

/// MessagePack values: never more used than given, a decoded value decodes the same from
/// exactly its bytes, and its encoding is stable (encoding what that decodes to gives the
/// same bytes).
pub fn msgpack(data: &[u8]) {
    if let Ok((value, used)) = crate::msgpack::decode(data) {
        assert!(used <= data.len());
        assert!(crate::msgpack::decode(&data[..used]).is_ok());
        let mut once = Vec::new();
        crate::msgpack::encode(&value, &mut once);
        let (again, again_used) = crate::msgpack::decode(&once).expect("our own encoding decodes");
        assert_eq!(again_used, once.len());
        let mut twice = Vec::new();
        crate::msgpack::encode(&again, &mut twice);
        assert_eq!(once, twice);
    }
}

/// SOCKS4 requests: never more used than given, and a complete request re-reads the same
/// from exactly its bytes.
pub fn socks4(data: &[u8]) {
    if let Ok(Parsed::Complete(request, used)) = socks4::parse_request(data) {
        assert!(used <= data.len());
        assert_eq!(
            socks4::parse_request(&data[..used]),
            Ok(Parsed::Complete(request, used))
        );
        assert!(!matches!(
            socks4::parse_request(&data[..used - 1]),
            Ok(Parsed::Complete(..))
        ));
    }
}

/// PROXY headers of both versions: a complete header re-reads the same from its own bytes,
/// and a v2 header we encode parses back to its addresses.
pub fn proxy_protocol(data: &[u8]) {
    for version in [proxy_protocol::Version::V1, proxy_protocol::Version::V2] {
        if let Ok(Parsed::Complete(header, used)) = proxy_protocol::parse(version, data) {
            assert!(used <= data.len());
            assert_eq!(
                proxy_protocol::parse(version, &data[..used]),
                Ok(Parsed::Complete(header, used))
            );
            if let Some((source, destination)) = header.addresses {
                let mut encoded = Vec::new();
                proxy_protocol::encode_v2(source, destination, &mut encoded);
                match proxy_protocol::parse(proxy_protocol::Version::V2, &encoded) {
                    Ok(Parsed::Complete(again, _)) => {
                        let canonical = |(s, d): (std::net::SocketAddr, std::net::SocketAddr)| {
                            (
                                (s.ip().to_canonical(), s.port()),
                                (d.ip().to_canonical(), d.port()),
                            )
                        };
                        assert_eq!(
                            again.addresses.map(canonical),
                            header.addresses.map(canonical)
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

pub fn frame(data: &[u8]) {
    if let Ok(Parsed::Complete(payload, used)) = frame::decode(data) {
        assert!(used <= data.len());
        assert_eq!(payload.len() + 4, used);
    }
}

/// ClientHellos: the records used are within the input and the limit, a complete hello reads
/// the same from exactly its records, and one byte less is never complete.
pub fn tls_hello(data: &[u8]) {
    const LIMIT: usize = 16 * 1024;
    if let Ok(Parsed::Complete(hello, used)) = tls_hello::parse(data, LIMIT) {
        assert!(used <= data.len() && used <= LIMIT);
        assert_eq!(
            tls_hello::parse(&data[..used], LIMIT),
            Ok(Parsed::Complete(hello, used))
        );
        assert!(!matches!(
            tls_hello::parse(&data[..used - 1], LIMIT),
            Ok(Parsed::Complete(..))
        ));
    }
}
