//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer puts in
//! front of a connection to say who the client really is. Port servers read it before
//! anything else (before TLS) and hand the connection on with the addresses it reported.
//!
//! [`parse`] takes the start of a connection and answers with the header and its length,
//! `Partial`, or an error; a connection whose header is wrong or of the other version is
//! dropped by the caller. Version 2 TLVs are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Parsed;

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 line is at most 107 bytes with its CRLF.
pub const V1_MAX_LEN: usize = 107;
/// Version 2 headers we accept: the addresses plus TLVs, within this.
pub const V2_MAX_LEN: usize = 16 + 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a header said: the client and the address it connected to, or nothing (`UNKNOWN`,
/// `LOCAL`, or a family other than TCP over IPv4/IPv6), in which case the socket's own
/// addresses stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("no PROXY protocol v{} header", if *.0 == Version::V1 { 1 } else { 2 })]
    Missing(Version),
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// Parses the header of `version` at the start of `buf`.
pub fn parse(version: Version, buf: &[u8]) -> Result<Parsed<Header>, ProxyProtocolError> {
    match version {
        Version::V1 => parse_v1(buf),
        Version::V2 => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed<Header>, ProxyProtocolError> {
    const PREFIX: &[u8] = b"PROXY ";
    let known = buf.len().min(PREFIX.len());
    if buf[..known] != PREFIX[..known] {
        return Err(ProxyProtocolError::Missing(Version::V1));
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyProtocolError::TooLong)
        } else {
            Ok(Parsed::Partial)
        };
    };
    if end + 1 > V1_MAX_LEN {
        return Err(ProxyProtocolError::TooLong);
    }
    let line = buf[..end]
        .strip_suffix(b"\r")
        .ok_or(ProxyProtocolError::Malformed("line does not end in CRLF"))?;
    let line = std::str::from_utf8(&line[PREFIX.len()..])
        .map_err(|_| ProxyProtocolError::Malformed("not ASCII"))?;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    let header = match family {
        "UNKNOWN" => Header { addresses: None },
        "TCP4" | "TCP6" => {
            let mut next = || {
                fields
                    .next()
                    .ok_or(ProxyProtocolError::Malformed("missing field"))
            };
            let (source, destination) = (next()?, next()?);
            let (source_port, destination_port) = (next()?, next()?);
            if fields.next().is_some() {
                return Err(ProxyProtocolError::Malformed("extra field"));
            }
            let ip = |text: &str| -> Result<IpAddr, ProxyProtocolError> {
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| ProxyProtocolError::Malformed("invalid address"))?;
                if ip.is_ipv4() != (family == "TCP4") {
                    return Err(ProxyProtocolError::Malformed("address of the wrong family"));
                }
                Ok(ip)
            };
            let port = |text: &str| -> Result<u16, ProxyProtocolError> {
                // No sign, no leading zeros: one spelling per port.
                if text.is_empty() || text.len() > 5 || (text.len() > 1 && text.starts_with('0')) {
                    return Err(ProxyProtocolError::Malformed("invalid port"));
                }
                text.parse()
                    .map_err(|_| ProxyProtocolError::Malformed("invalid port"))
            };
            Header {
                addresses: Some((
                    SocketAddr::new(ip(source)?, port(source_port)?),
                    SocketAddr::new(ip(destination)?, port(destination_port)?),
                )),
            }
        }
        _ => return Err(ProxyProtocolError::Malformed("unknown protocol family")),
    };
    Ok(Parsed::Complete(header, end + 1))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed<Header>, ProxyProtocolError> {
    let known = buf.len().min(V2_SIGNATURE.len());
    if buf[..known] != V2_SIGNATURE[..known] {
        return Err(ProxyProtocolError::Missing(Version::V2));
    }
    let Some(fixed) = buf.get(..16) else {
        return Ok(Parsed::Partial);
    };
    let (version_command, family) = (fixed[12], fixed[13]);
    if version_command >> 4 != 2 {
        return Err(ProxyProtocolError::Malformed("version is not 2"));
    }
    let length = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    if 16 + length > V2_MAX_LEN {
        return Err(ProxyProtocolError::TooLong);
    }
    let Some(body) = buf.get(16..16 + length) else {
        return Ok(Parsed::Partial);
    };
    let used = 16 + length;
    let addresses = match version_command & 0x0f {
        // LOCAL: the balancer's own connection (a health check); the socket's addresses stand.
        0x0 => None,
        0x1 => match family {
            // TCP over IPv4.
            0x11 => {
                let b = body
                    .get(..12)
                    .ok_or(ProxyProtocolError::Malformed("short IPv4 addresses"))?;
                let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
                let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
                Some((
                    SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                    SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
                ))
            }
            // TCP over IPv6.
            0x21 => {
                let b = body
                    .get(..36)
                    .ok_or(ProxyProtocolError::Malformed("short IPv6 addresses"))?;
                let ip = |at: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&b[at..at + 16]);
                    Ipv6Addr::from(octets)
                };
                let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
                Some((
                    SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                    SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
                ))
            }
            // UNSPEC, UDP, unix sockets: nothing we can use as a client address.
            _ => None,
        },
        _ => return Err(ProxyProtocolError::Malformed("unknown command")),
    };
    Ok(Parsed::Complete(Header { addresses }, used))
}

/// Writes a version 1 PROXY line for a TCP connection from `source` to `destination` (the
/// escapers' `use_proxy_protocol: 1`); mixed families are written as IPv6, IPv4 mapped.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    use std::io::Write;
    let (family, from, to) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ("TCP4", IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => IpAddr::V6(ip.to_ipv6_mapped()),
                v6 => v6,
            };
            ("TCP6", v6(s), v6(d))
        }
    };
    let (from_port, to_port) = (source.port(), destination.port());
    // Writing to a Vec does not fail.
    let _ = write!(out, "PROXY {family} {from} {to} {from_port} {to_port}\r\n");
}

/// Writes a version 2 PROXY header for a TCP connection from `source` to `destination` (a
/// test client's side, and the escapers' `use_proxy_protocol: 2`).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    encode_v2_with(source, destination, &[], out);
}

/// g3's own TLV types, which `divert_tcp` sends its next hop.
pub const TLV_UPSTREAM: u8 = 0xe0;
pub const TLV_TLS_NAME: u8 = 0xe1;
pub const TLV_USERNAME: u8 = 0xe2;
pub const TLV_TASK_ID: u8 = 0xe3;

/// [`encode_v2`] with TLVs after the addresses (type, value); a value longer than 65535
/// bytes is left out, as no header could carry it.
pub fn encode_v2_with(
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: &[(u8, &[u8])],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(source).octets());
            out.extend_from_slice(&v6(destination).octets());
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
    for (kind, value) in tlvs {
        let Ok(len) = u16::try_from(value.len()) else {
            continue;
        };
        out.push(*kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    }
    // The length field covers the addresses and the TLVs.
    let body = out.len() - start - 16;
    if let Ok(body) = u16::try_from(body) {
        out[start + 14..start + 16].copy_from_slice(&body.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(source: &str, destination: &str) -> Option<(SocketAddr, SocketAddr)> {
        Some((source.parse().unwrap(), destination.parse().unwrap()))
    }

    #[test]
    fn tlvs_follow_the_addresses_within_the_length() {
        let (source, destination) = addresses("192.168.0.1:56324", "192.168.0.11:443").unwrap();
        let mut out = Vec::new();
        encode_v2_with(source, destination, &[(TLV_TASK_ID, b"1234")], &mut out);
        // g3's own encoder's bytes for the same header.
        assert_eq!(
            out,
            b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x13\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb\xe3\x00\x041234"
        );
        let Ok(Parsed::Complete(header, used)) = parse(Version::V2, &out) else {
            panic!("a header with TLVs parses");
        };
        assert_eq!(used, out.len());
        assert_eq!(header.addresses, Some((source, destination)));
    }

    #[test]
    fn encoded_headers_parse_back() {
        for (source, destination) in [
            ("192.0.2.1:4000", "198.51.100.2:80"),
            ("[2001:db8::1]:4000", "[2001:db8::2]:443"),
            ("192.0.2.1:4000", "[2001:db8::2]:443"),
        ] {
            let (source, destination) = addresses(source, destination).unwrap();
            for (version, encode) in [
                (
                    Version::V1,
                    encode_v1 as fn(SocketAddr, SocketAddr, &mut Vec<u8>),
                ),
                (Version::V2, encode_v2),
            ] {
                let mut out = Vec::new();
                encode(source, destination, &mut out);
                let Ok(Parsed::Complete(header, used)) = parse(version, &out) else {
                    panic!("{version:?} {source} -> {destination} does not parse back");
                };
                assert_eq!(used, out.len());
                let (s, d) = header.addresses.expect("addresses");
                assert_eq!(s.port(), source.port());
                assert_eq!(d.port(), destination.port());
                assert_eq!(s.ip().to_canonical(), source.ip().to_canonical());
                assert_eq!(d.ip().to_canonical(), destination.ip().to_canonical());
            }
        }
    }

    #[test]
    fn version_1_lines() {
        let check = |text: &[u8], want: Result<Parsed<Header>, ProxyProtocolError>| {
            assert_eq!(
                parse(Version::V1, text),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        };
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET";
        check(
            line,
            Ok(Parsed::Complete(
                Header {
                    addresses: addresses("192.0.2.1:56324", "198.51.100.2:443"),
                },
                line.len() - 3,
            )),
        );
        check(
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
            Ok(Parsed::Complete(
                Header {
                    addresses: addresses("[2001:db8::1]:1", "[::1]:2"),
                },
                32,
            )),
        );
        check(
            b"PROXY UNKNOWN\r\n",
            Ok(Parsed::Complete(Header { addresses: None }, 15)),
        );
        check(
            b"GET / HTTP/1.1\r\n",
            Err(ProxyProtocolError::Missing(Version::V1)),
        );
        check(
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            Err(ProxyProtocolError::Malformed("address of the wrong family")),
        );
        check(
            b"PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n",
            Err(ProxyProtocolError::Malformed("invalid port")),
        );
        check(
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n",
            Err(ProxyProtocolError::Malformed("line does not end in CRLF")),
        );
        check(
            &[b'P'; 200][..],
            Err(ProxyProtocolError::Missing(Version::V1)),
        );
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'x'; 120]);
        check(&long, Err(ProxyProtocolError::TooLong));
    }

    #[test]
    fn version_2_headers_round_trip_and_every_prefix_is_partial() {
        for (source, destination) in [
            ("192.0.2.1:56324", "198.51.100.2:443"),
            ("[2001:db8::1]:1", "[::1]:2"),
        ] {
            let mut header = Vec::new();
            encode_v2(
                source.parse().unwrap(),
                destination.parse().unwrap(),
                &mut header,
            );
            for cut in 0..header.len() {
                assert_eq!(
                    parse(Version::V2, &header[..cut]),
                    Ok(Parsed::Partial),
                    "{cut}"
                );
            }
            header.extend_from_slice(b"after");
            assert_eq!(
                parse(Version::V2, &header),
                Ok(Parsed::Complete(
                    Header {
                        addresses: addresses(source, destination)
                    },
                    header.len() - 5
                ))
            );
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(Version::V2, &local),
            Ok(Parsed::Complete(Header { addresses: None }, 16))
        );
        assert_eq!(
            parse(Version::V2, b"PROXY TCP4 "),
            Err(ProxyProtocolError::Missing(Version::V2))
        );
        let mut wrong_version = V2_SIGNATURE.to_vec();
        wrong_version.extend_from_slice(&[0x11, 0x11, 0x00, 0x0c]);
        assert!(parse(Version::V2, &wrong_version).is_err());
    }

    #[test]
    fn every_prefix_of_a_v1_line_is_partial() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        for cut in 0..line.len() {
            assert_eq!(
                parse(Version::V1, &line[..cut]),
                Ok(Parsed::Partial),
                "{cut}"
            );
        }
    }
}
