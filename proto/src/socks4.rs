//! SOCKS4 and SOCKS4a requests and replies. A request is one message: version 4, the
//! command, the port, an IPv4 address and a NUL-terminated user id; SOCKS4a marks a domain
//! target with the address 0.0.0.x (x ≠ 0) and appends the domain, NUL-terminated.
//!
//! The worker's `socks_proxy` server tells SOCKS4 from SOCKS5 by the first byte and calls
//! [`parse_request`]; it answers with [`encode_reply`].

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::{Host, HostPort, Parsed};

pub const VERSION: u8 = 4;
/// The longest user id or domain we read, without its NUL.
pub const MAX_FIELD: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Bind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub target: HostPort,
    pub user_id: Vec<u8>,
}

/// Reply codes (the SOCKS4 protocol's CD field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Granted = 90,
    Rejected = 91,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Socks4Error {
    #[error("not a socks4 request (version {0})")]
    Version(u8),
    #[error("unknown socks4 command {0}")]
    UnknownCommand(u8),
    #[error("socks4 user id or domain too long")]
    TooLong,
    #[error("invalid socks4a domain")]
    InvalidDomain,
}

/// Finds a NUL in `buf` within `MAX_FIELD` bytes: the field and the bytes used with its NUL.
fn nul_terminated(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Socks4Error> {
    match buf.iter().take(MAX_FIELD + 1).position(|&b| b == 0) {
        Some(end) => Ok(Some((&buf[..end], end + 1))),
        None if buf.len() > MAX_FIELD => Err(Socks4Error::TooLong),
        None => Ok(None),
    }
}

pub fn parse_request(buf: &[u8]) -> Result<Parsed<Request>, Socks4Error> {
    if let Some(&version) = buf.first()
        && version != VERSION
    {
        return Err(Socks4Error::Version(version));
    }
    let command = match buf.get(1) {
        None => return Ok(Parsed::Partial),
        Some(1) => Command::Connect,
        Some(2) => Command::Bind,
        Some(&other) => return Err(Socks4Error::UnknownCommand(other)),
    };
    let Some(fixed) = buf.get(..8) else {
        return Ok(Parsed::Partial);
    };
    let port = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ip = Ipv4Addr::new(fixed[4], fixed[5], fixed[6], fixed[7]);
    let Some((user_id, user_len)) = nul_terminated(&buf[8..])? else {
        return Ok(Parsed::Partial);
    };
    let mut used = 8 + user_len;
    let octets = ip.octets();
    let host = if octets[..3] == [0, 0, 0] && octets[3] != 0 {
        // SOCKS4a: the domain follows the user id.
        let Some((domain, domain_len)) = nul_terminated(&buf[used..])? else {
            return Ok(Parsed::Partial);
        };
        used += domain_len;
        let domain = std::str::from_utf8(domain).map_err(|_| Socks4Error::InvalidDomain)?;
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return Err(Socks4Error::InvalidDomain);
        }
        Host::Domain(domain.to_ascii_lowercase())
    } else {
        Host::Ip(ip.into())
    };
    Ok(Parsed::Complete(
        Request {
            command,
            target: HostPort { host, port },
            user_id: user_id.to_vec(),
        },
        used,
    ))
}

/// The 8-byte reply; `bound` fills DSTPORT/DSTIP (zeros when unknown).
pub fn encode_reply(reply: Reply, bound: Option<SocketAddrV4>) -> [u8; 8] {
    let bound = bound.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let port = bound.port().to_be_bytes();
    let ip = bound.ip().octets();
    [0, reply as u8, port[0], port[1], ip[0], ip[1], ip[2], ip[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as the tests state it: command, target, user id.
    type Expected<'a> = Result<Parsed<(Command, &'a str, &'a [u8])>, Socks4Error>;

    #[test]
    fn requests() {
        let check = |bytes: &[u8], want: Expected| {
            let got = parse_request(bytes).map(|parsed| match parsed {
                Parsed::Complete(r, used) => {
                    Parsed::Complete((r.command, r.target.to_string(), r.user_id), used)
                }
                Parsed::Partial => Parsed::Partial,
            });
            let want = want.map(|parsed| match parsed {
                Parsed::Complete((c, t, u), used) => {
                    Parsed::Complete((c, t.to_string(), u.to_vec()), used)
                }
                Parsed::Partial => Parsed::Partial,
            });
            assert_eq!(got, want, "{bytes:?}");
        };
        check(
            b"\x04\x01\x00\x50\x7f\x00\x00\x01bob\x00rest",
            Ok(Parsed::Complete(
                (Command::Connect, "127.0.0.1:80", b"bob"),
                12,
            )),
        );
        check(
            b"\x04\x01\x01\xbb\x00\x00\x00\x07\x00Example.COM\x00",
            Ok(Parsed::Complete(
                (Command::Connect, "example.com:443", b""),
                21,
            )),
        );
        check(
            b"\x04\x02\x00\x50\x7f\x00\x00\x01\x00",
            Ok(Parsed::Complete((Command::Bind, "127.0.0.1:80", b""), 9)),
        );
        check(b"\x05\x01", Err(Socks4Error::Version(5)));
        check(b"\x04\x03", Err(Socks4Error::UnknownCommand(3)));
        check(
            b"\x04\x01\x00\x50\x00\x00\x00\x07\x00bad host\x00",
            Err(Socks4Error::InvalidDomain),
        );
        let mut long = b"\x04\x01\x00\x50\x7f\x00\x00\x01".to_vec();
        long.extend_from_slice(&[b'u'; 300]);
        check(&long, Err(Socks4Error::TooLong));
    }

    #[test]
    fn every_prefix_is_partial() {
        let request = b"\x04\x01\x01\xbb\x00\x00\x00\x07user\x00example.com\x00";
        for cut in 0..request.len() {
            assert_eq!(parse_request(&request[..cut]), Ok(Parsed::Partial), "{cut}");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            encode_reply(Reply::Granted, Some("192.0.2.1:8080".parse().unwrap())),
            [0, 90, 0x1f, 0x90, 192, 0, 2, 1]
        );
        assert_eq!(
            encode_reply(Reply::Rejected, None),
            [0, 91, 0, 0, 0, 0, 0, 0]
        );
    }
}
