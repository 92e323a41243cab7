//! SOCKS5 negotiation (RFC 1928): the client greeting, the request and our replies.
//!
//! The worker's `socks_proxy` server reads into a buffer and calls [`parse_greeting`] and then
//! [`parse_request`]; it answers with [`encode_method_choice`] and [`encode_reply`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Host, HostPort, Parsed};

pub const VERSION: u8 = 5;
pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_USER_PASSWORD: u8 = 0x02;
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub target: HostPort,
}

/// Reply codes of RFC 1928 section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    #[error("not a socks5 message (version {0})")]
    Version(u8),
    #[error("no authentication methods offered")]
    NoMethods,
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("unknown address type {0}")]
    UnknownAddressType(u8),
    #[error("invalid domain name")]
    InvalidDomain,
    #[error("reserved byte is not zero")]
    Reserved,
    #[error("datagram shorter than its header")]
    Truncated,
}

impl Socks5Error {
    /// The reply that tells the client what was wrong with its request.
    pub fn reply(&self) -> Reply {
        match self {
            Socks5Error::UnknownCommand(_) => Reply::CommandNotSupported,
            Socks5Error::UnknownAddressType(_) => Reply::AddressTypeNotSupported,
            _ => Reply::GeneralFailure,
        }
    }
}

/// Parses `VER NMETHODS METHODS...`; answers the offered methods.
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<Vec<u8>>, Socks5Error> {
    let [version, count, rest @ ..] = buf else {
        return match buf.first() {
            Some(&v) if v != VERSION => Err(Socks5Error::Version(v)),
            _ => Ok(Parsed::Partial),
        };
    };
    if *version != VERSION {
        return Err(Socks5Error::Version(*version));
    }
    if *count == 0 {
        return Err(Socks5Error::NoMethods);
    }
    match rest.get(..*count as usize) {
        Some(methods) => Ok(Parsed::Complete(methods.to_vec(), 2 + *count as usize)),
        None => Ok(Parsed::Partial),
    }
}

pub fn encode_method_choice(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// Username/password sub-negotiation (RFC 1929): its version byte and our answers.
pub const USER_PASSWORD_VERSION: u8 = 1;
pub const USER_PASSWORD_SUCCESS: u8 = 0;
pub const USER_PASSWORD_FAILURE: u8 = 1;

/// RFC 1929's `VER ULEN UNAME PLEN PASSWD`: the name and the password as sent.
pub struct UserPassword {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, wherever this ends up printed.
        write!(f, "UserPassword({:?})", String::from_utf8_lossy(&self.user))
    }
}

pub fn parse_user_password(buf: &[u8]) -> Result<Parsed<UserPassword>, Socks5Error> {
    let [version, user_len, rest @ ..] = buf else {
        return match buf.first() {
            Some(&v) if v != USER_PASSWORD_VERSION => Err(Socks5Error::Version(v)),
            _ => Ok(Parsed::Partial),
        };
    };
    if *version != USER_PASSWORD_VERSION {
        return Err(Socks5Error::Version(*version));
    }
    let user_len = *user_len as usize;
    let Some((user, rest)) = rest.split_at_checked(user_len) else {
        return Ok(Parsed::Partial);
    };
    let Some((&password_len, rest)) = rest.split_first() else {
        return Ok(Parsed::Partial);
    };
    let Some(password) = rest.get(..password_len as usize) else {
        return Ok(Parsed::Partial);
    };
    Ok(Parsed::Complete(
        UserPassword {
            user: user.to_vec(),
            password: password.to_vec(),
        },
        3 + user_len + password_len as usize,
    ))
}

pub fn encode_user_password_status(status: u8) -> [u8; 2] {
    [USER_PASSWORD_VERSION, status]
}

/// Parses `VER CMD RSV ATYP DST.ADDR DST.PORT`.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<Request>, Socks5Error> {
    if let Some(&version) = buf.first()
        && version != VERSION
    {
        return Err(Socks5Error::Version(version));
    }
    let [_, command, reserved, address_type, rest @ ..] = buf else {
        return Ok(Parsed::Partial);
    };
    let command = match command {
        1 => Command::Connect,
        2 => Command::Bind,
        3 => Command::UdpAssociate,
        other => return Err(Socks5Error::UnknownCommand(*other)),
    };
    if *reserved != 0 {
        return Err(Socks5Error::Reserved);
    }
    let Some((target, address_len)) = parse_address(*address_type, rest)? else {
        return Ok(Parsed::Partial);
    };
    Ok(Parsed::Complete(
        Request { command, target },
        4 + address_len,
    ))
}

/// Parses `DST.ADDR DST.PORT` of address type `address_type` at the start of `rest`: the
/// target and the bytes used, or `None` when `rest` is too short.
fn parse_address(address_type: u8, rest: &[u8]) -> Result<Option<(HostPort, usize)>, Socks5Error> {
    let (host, address_len) = match address_type {
        1 => match rest.get(..4) {
            Some(b) => (
                Host::Ip(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                4,
            ),
            None => return Ok(None),
        },
        4 => match rest.get(..16) {
            Some(b) => {
                let octets: [u8; 16] = b.try_into().unwrap_or_default();
                (Host::Ip(IpAddr::V6(Ipv6Addr::from(octets))), 16)
            }
            None => return Ok(None),
        },
        3 => {
            let Some(&len) = rest.first() else {
                return Ok(None);
            };
            let Some(name) = rest.get(1..1 + len as usize) else {
                return Ok(None);
            };
            let name = std::str::from_utf8(name).map_err(|_| Socks5Error::InvalidDomain)?;
            // Some clients put an address literal in the domain field.
            let host = Host::parse_uri_host(name).ok_or(Socks5Error::InvalidDomain)?;
            (host, 1 + len as usize)
        }
        other => return Err(Socks5Error::UnknownAddressType(other)),
    };
    let Some(port) = rest.get(address_len..address_len + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok(Some((HostPort { host, port }, address_len + 2)))
}

/// The header of a SOCKS5 UDP datagram (RFC 1928 section 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// Fragment number; 0 for a whole datagram, the only kind relayed.
    pub fragment: u8,
    pub target: HostPort,
}

/// Parses `RSV RSV FRAG ATYP DST.ADDR DST.PORT` at the start of a whole datagram; answers
/// the header and where the payload starts.
pub fn parse_udp_header(datagram: &[u8]) -> Result<(UdpHeader, usize), Socks5Error> {
    let [
        reserved_high,
        reserved_low,
        fragment,
        address_type,
        rest @ ..,
    ] = datagram
    else {
        return Err(Socks5Error::Truncated);
    };
    if (*reserved_high, *reserved_low) != (0, 0) {
        return Err(Socks5Error::Reserved);
    }
    let (target, used) = parse_address(*address_type, rest)?.ok_or(Socks5Error::Truncated)?;
    Ok((
        UdpHeader {
            fragment: *fragment,
            target,
        },
        4 + used,
    ))
}

/// Writes the header of a datagram from `target` as the client named it (a domain stays a
/// domain), for replies on a session fixed to one target.
pub fn encode_udp_header_for(target: &HostPort, out: &mut Vec<u8>) {
    match &target.host {
        Host::Ip(ip) => encode_udp_header(SocketAddr::new(*ip, target.port), out),
        Host::Domain(domain) => {
            out.extend_from_slice(&[0, 0, 0, 3]);
            // Domains here came from a SOCKS header, so they fit in one length byte.
            let name = &domain.as_bytes()[..domain.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&target.port.to_be_bytes());
        }
    }
}

/// Writes the header of a datagram that came from `source`, for the client.
pub fn encode_udp_header(source: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0]);
    match source.ip() {
        IpAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                out.push(1);
                out.extend_from_slice(&v4.octets());
            }
            None => {
                out.push(4);
                out.extend_from_slice(&v6.octets());
            }
        },
    }
    out.extend_from_slice(&source.port().to_be_bytes());
}

// The client side, for escapers that chain to a SOCKS5 next hop. Each answer has a length
// known from its first bytes, so a caller reads exactly it and leaves what follows.

/// `VER NMETHODS METHODS`: no authentication, and username/password when we have them.
pub fn encode_greeting(with_password: bool) -> Vec<u8> {
    match with_password {
        true => vec![VERSION, 2, METHOD_NO_AUTH, METHOD_USER_PASSWORD],
        false => vec![VERSION, 1, METHOD_NO_AUTH],
    }
}

/// The method the server chose, from its two-byte answer.
pub fn parse_method_choice(answer: [u8; 2]) -> Result<u8, Socks5Error> {
    match answer {
        [VERSION, method] => Ok(method),
        [version, _] => Err(Socks5Error::Version(version)),
    }
}

/// RFC 1929's request; `None` when a part is longer than 255 bytes.
pub fn encode_user_password(user: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    let user_len = u8::try_from(user.len()).ok()?;
    let password_len = u8::try_from(password.len()).ok()?;
    let mut out = Vec::with_capacity(3 + user.len() + password.len());
    out.extend_from_slice(&[USER_PASSWORD_VERSION, user_len]);
    out.extend_from_slice(user);
    out.push(password_len);
    out.extend_from_slice(password);
    Some(out)
}

/// Whether RFC 1929's two-byte answer accepts us.
pub fn user_password_accepted(answer: [u8; 2]) -> bool {
    answer == [USER_PASSWORD_VERSION, USER_PASSWORD_SUCCESS]
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`; a domain longer than 255 bytes cannot be sent
/// (`None`).
pub fn encode_request(command: Command, target: &HostPort) -> Option<Vec<u8>> {
    let command = match command {
        Command::Connect => 1,
        Command::Bind => 2,
        Command::UdpAssociate => 3,
    };
    let mut out = vec![VERSION, command, 0];
    match &target.host {
        Host::Ip(IpAddr::V4(v4)) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        Host::Ip(IpAddr::V6(v6)) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
        Host::Domain(domain) => {
            out.push(3);
            out.push(u8::try_from(domain.len()).ok()?);
            out.extend_from_slice(domain.as_bytes());
        }
    }
    out.extend_from_slice(&target.port.to_be_bytes());
    Some(out)
}

/// How many more bytes a reply has after its first five (`VER REP RSV ATYP` and the first
/// address byte).
pub fn reply_rest_len(first: [u8; 5]) -> Result<usize, Socks5Error> {
    match first {
        [VERSION, _, _, 1, _] => Ok(3 + 2),
        [VERSION, _, _, 4, _] => Ok(15 + 2),
        [VERSION, _, _, 3, len] => Ok(len as usize + 2),
        [VERSION, _, _, other, _] => Err(Socks5Error::UnknownAddressType(other)),
        [version, ..] => Err(Socks5Error::Version(version)),
    }
}

/// A whole reply: its code and the address the server bound.
pub fn parse_reply(reply: &[u8]) -> Result<(u8, HostPort), Socks5Error> {
    let [VERSION, code, _reserved, address_type, rest @ ..] = reply else {
        return Err(match reply.first() {
            Some(&version) if version != VERSION => Socks5Error::Version(version),
            _ => Socks5Error::Truncated,
        });
    };
    let (bound, _) = parse_address(*address_type, rest)?.ok_or(Socks5Error::Truncated)?;
    Ok((*code, bound))
}

/// Encodes `VER REP RSV ATYP BND.ADDR BND.PORT`.
pub fn encode_reply(reply: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut out = vec![VERSION, reply as u8, 0];
    match bound.ip() {
        IpAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_round_trip_through_the_server_parsers() {
        let target = HostPort {
            host: Host::Domain("example.test".into()),
            port: 443,
        };
        let request = encode_request(Command::Connect, &target).unwrap();
        assert_eq!(
            parse_request(&request).unwrap(),
            Parsed::Complete(
                Request {
                    command: Command::Connect,
                    target: target.clone()
                },
                request.len()
            )
        );
        let long = HostPort {
            host: Host::Domain("a".repeat(256)),
            port: 1,
        };
        assert!(encode_request(Command::Connect, &long).is_none());
        assert_eq!(
            parse_greeting(&encode_greeting(true)).unwrap(),
            Parsed::Complete(vec![METHOD_NO_AUTH, METHOD_USER_PASSWORD], 4)
        );
        let login = encode_user_password(b"me", b"secret").unwrap();
        let Parsed::Complete(parsed, used) = parse_user_password(&login).unwrap() else {
            panic!("a whole login");
        };
        assert_eq!((parsed.user.as_slice(), used), (&b"me"[..], login.len()));
        assert!(encode_user_password(&[b'x'; 256], b"").is_none());
        for bound in ["192.0.2.1:1080", "[2001:db8::1]:1080"] {
            let reply = encode_reply(Reply::Succeeded, Some(bound.parse().unwrap()));
            let first: [u8; 5] = reply[..5].try_into().unwrap();
            assert_eq!(5 + reply_rest_len(first).unwrap(), reply.len());
            let (code, at) = parse_reply(&reply).unwrap();
            assert_eq!((code, at.to_string()), (0, bound.to_string()));
        }
    }

    #[test]
    fn user_password() {
        let wire = b"\x01\x03bob\x04p:ss";
        for cut in 0..wire.len() {
            assert!(matches!(
                parse_user_password(&wire[..cut]),
                Ok(Parsed::Partial)
            ));
        }
        let Ok(Parsed::Complete(parsed, used)) = parse_user_password(wire) else {
            panic!("complete message not parsed");
        };
        assert_eq!(
            (parsed.user.as_slice(), parsed.password.as_slice(), used),
            (&b"bob"[..], &b"p:ss"[..], 10)
        );
        assert!(!format!("{parsed:?}").contains("p:ss"));
        assert!(parse_user_password(b"\x05\x01").is_err());
        let Ok(Parsed::Complete(empty, 3)) = parse_user_password(b"\x01\x00\x00") else {
            panic!("empty name and password not parsed");
        };
        assert!(empty.user.is_empty() && empty.password.is_empty());
    }

    fn check_request(wire: &[u8], want: Result<(&str, Command), Socks5Error>) {
        for cut in 0..wire.len() {
            let partial = parse_request(&wire[..cut]);
            assert!(
                matches!(partial, Ok(Parsed::Partial)) || partial.is_err() && want.is_err(),
                "prefix {cut} of {wire:?} gave {partial:?}"
            );
        }
        let got = parse_request(wire).map(|p| match p {
            Parsed::Complete(req, used) => {
                assert_eq!(used, wire.len());
                (req.target.to_string(), req.command)
            }
            Parsed::Partial => panic!("whole request is partial"),
        });
        let want = want.map(|(t, c)| (t.to_string(), c));
        assert_eq!(got, want);
    }

    #[test]
    fn requests() {
        check_request(
            &[5, 1, 0, 1, 127, 0, 0, 1, 0, 80],
            Ok(("127.0.0.1:80", Command::Connect)),
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[1, 187]);
        check_request(&v6, Ok(("[::1]:443", Command::Connect)));
        let mut domain = vec![5, 3, 0, 3, 9];
        domain.extend_from_slice(b"Localhost");
        domain.extend_from_slice(&[0x1f, 0x90]);
        check_request(&domain, Ok(("localhost:8080", Command::UdpAssociate)));
        check_request(
            &[5, 9, 0, 1, 1, 1, 1, 1, 0, 1],
            Err(Socks5Error::UnknownCommand(9)),
        );
        check_request(
            &[5, 1, 0, 7, 1, 1, 1, 1, 0, 1],
            Err(Socks5Error::UnknownAddressType(7)),
        );
        check_request(&[4, 1, 0, 1], Err(Socks5Error::Version(4)));
        check_request(
            &[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 1],
            Err(Socks5Error::InvalidDomain),
        );
    }

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(&[5]), Ok(Parsed::Partial));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(Parsed::Partial));
        assert_eq!(
            parse_greeting(&[5, 2, 0, 2, 9]),
            Ok(Parsed::Complete(vec![0, 2], 4))
        );
        assert_eq!(parse_greeting(&[4]), Err(Socks5Error::Version(4)));
        assert_eq!(parse_greeting(&[5, 0]), Err(Socks5Error::NoMethods));
    }

    #[test]
    fn udp_headers_round_trip() {
        for source in ["192.0.2.7:53", "[2001:db8::1]:5353", "[::ffff:192.0.2.8]:9"] {
            let source: SocketAddr = source.parse().unwrap();
            let mut datagram = Vec::new();
            encode_udp_header(source, &mut datagram);
            let header_len = datagram.len();
            datagram.extend_from_slice(b"payload");
            let (header, used) = parse_udp_header(&datagram).unwrap();
            assert_eq!(used, header_len);
            assert_eq!(header.fragment, 0);
            assert_eq!(
                header.target,
                HostPort {
                    host: Host::Ip(source.ip().to_canonical()),
                    port: source.port()
                }
            );
            for cut in 0..header_len {
                assert_eq!(
                    parse_udp_header(&datagram[..cut]),
                    Err(Socks5Error::Truncated),
                    "{cut}"
                );
            }
        }
        let mut named = vec![0, 0, 1, 3, 7];
        named.extend_from_slice(b"example");
        named.extend_from_slice(&[0, 53]);
        let (header, used) = parse_udp_header(&named).unwrap();
        assert_eq!(
            (header.fragment, header.target.to_string(), used),
            (1, "example:53".to_string(), named.len())
        );
        assert_eq!(
            parse_udp_header(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 1]),
            Err(Socks5Error::Reserved)
        );
    }

    #[test]
    fn replies() {
        let addr: SocketAddr = "[::1]:1080".parse().unwrap();
        let wire = encode_reply(Reply::Succeeded, Some(addr));
        assert_eq!(wire.len(), 4 + 16 + 2);
        assert_eq!(&wire[..4], &[5, 0, 0, 4]);
        assert_eq!(
            encode_reply(Reply::NotAllowed, None),
            vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }
}
