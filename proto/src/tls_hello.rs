//! The TLS ClientHello, read without terminating TLS: the server name (SNI) and the ALPN
//! protocols a client asks for, so a server can route a connection it will pass on untouched
//! (`sni_proxy`) or detect TLS on a shared port.
//!
//! [`parse`] takes the start of a connection. The hello may span several TLS records (and
//! the records any number of reads): it answers `Partial` until the whole handshake message
//! is there, then the hello and the bytes of every record that carried it, which the caller
//! replays upstream as they came.

use crate::Parsed;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
/// A TLS record carries at most 2^14 bytes of plaintext.
const MAX_RECORD: usize = 1 << 14;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The DNS name of the server_name extension, lowercased.
    pub server_name: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS handshake")]
    NotTls,
    #[error("not a ClientHello")]
    NotClientHello,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("ClientHello larger than the limit")]
    TooLarge,
}

/// A cursor over a byte slice that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if n > self.bytes.len() {
            return Err(HelloError::Malformed("field runs past its container"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A field prefixed with its length in `width` bytes.
    fn vector(&mut self, width: usize) -> Result<Reader<'a>, HelloError> {
        let len = match width {
            1 => self.u8()? as usize,
            _ => self.u16()? as usize,
        };
        Ok(Reader {
            bytes: self.take(len)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Parses the ClientHello at the start of `buf`, reading at most `max_size` bytes of records.
pub fn parse(buf: &[u8], max_size: usize) -> Result<Parsed<ClientHello>, HelloError> {
    // Gather the handshake bytes from consecutive handshake records.
    let mut handshake = Vec::new();
    let mut offset = 0;
    let message_len = loop {
        let Some(header) = buf.get(offset..offset + 5) else {
            if buf.len() >= max_size {
                return Err(HelloError::TooLarge);
            }
            // What is there must still look like TLS.
            if buf.first().is_some_and(|&b| b != CONTENT_HANDSHAKE) {
                return Err(HelloError::NotTls);
            }
            return Ok(Parsed::Partial);
        };
        if header[0] != CONTENT_HANDSHAKE {
            return Err(if offset == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("another record type inside the hello")
            });
        }
        if header[1] != 3 {
            return Err(HelloError::NotTls);
        }
        let record_len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if record_len == 0 || record_len > MAX_RECORD {
            return Err(HelloError::Malformed("record length"));
        }
        if offset + 5 + record_len > max_size {
            return Err(HelloError::TooLarge);
        }
        let Some(body) = buf.get(offset + 5..offset + 5 + record_len) else {
            return Ok(Parsed::Partial);
        };
        handshake.extend_from_slice(body);
        offset += 5 + record_len;
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::NotClientHello);
            }
            let len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if 4 + len > max_size {
                return Err(HelloError::TooLarge);
            }
            if handshake.len() >= 4 + len {
                break len;
            }
        }
    };
    let hello = parse_body(&handshake[4..4 + message_len])?;
    Ok(Parsed::Complete(hello, offset))
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut hello = Reader { bytes: body };
    let _legacy_version = hello.u16()?;
    let _random = hello.take(32)?;
    let session_id = hello.vector(1)?;
    if session_id.bytes.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let _cipher_suites = hello.vector(2)?;
    let _compression = hello.vector(1)?;
    let mut found = ClientHello::default();
    if hello.is_empty() {
        // A hello without extensions is allowed (TLS 1.2), and names no server.
        return Ok(found);
    }
    let mut extensions = hello.vector(2)?;
    let mut seen = std::collections::HashSet::new();
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vector(2)?;
        if !seen.insert(kind) {
            return Err(HelloError::Malformed("an extension appears twice"));
        }
        match kind {
            EXTENSION_SERVER_NAME => {
                let mut names = data.vector(2)?;
                while !names.is_empty() {
                    let name_type = names.u8()?;
                    let name = names.vector(2)?;
                    if name_type == 0 {
                        if found.server_name.is_some() {
                            return Err(HelloError::Malformed("two host names"));
                        }
                        let name = std::str::from_utf8(name.bytes)
                            .map_err(|_| HelloError::Malformed("server name is not ASCII"))?;
                        if name.is_empty()
                            || !name.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'
                            })
                        {
                            return Err(HelloError::Malformed("server name is not a host name"));
                        }
                        found.server_name = Some(name.trim_end_matches('.').to_ascii_lowercase());
                    }
                }
            }
            EXTENSION_ALPN => {
                let mut protocols = data.vector(2)?;
                while !protocols.is_empty() {
                    let protocol = protocols.vector(1)?;
                    if protocol.is_empty() {
                        return Err(HelloError::Malformed("empty ALPN protocol"));
                    }
                    found.alpn.push(protocol.bytes.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Builds a ClientHello record for `server_name` with `alpn` (tests and fuzz seeds), split
/// into records of at most `record_size` handshake bytes.
pub fn encode_client_hello(
    server_name: Option<&str>,
    alpn: &[&[u8]],
    record_size: usize,
) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = server_name {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        extensions.extend_from_slice(&EXTENSION_SERVER_NAME.to_be_bytes());
        extensions.extend_from_slice(&(list.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&list);
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for protocol in alpn {
            list.push(protocol.len() as u8);
            list.extend_from_slice(protocol);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        extensions.extend_from_slice(&EXTENSION_ALPN.to_be_bytes());
        extensions.extend_from_slice(&(data.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&data);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![HANDSHAKE_CLIENT_HELLO];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in handshake.chunks(record_size.clamp(1, MAX_RECORD)) {
        out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_protocols_at_every_split() {
        for record_size in [7, 64, MAX_RECORD] {
            let mut wire =
                encode_client_hello(Some("Example.COM"), &[b"h2", b"http/1.1"], record_size);
            let hello_len = wire.len();
            for cut in 0..hello_len {
                assert_eq!(
                    parse(&wire[..cut], 65536),
                    Ok(Parsed::Partial),
                    "{record_size} {cut}"
                );
            }
            wire.extend_from_slice(b"\x17\x03\x03 after");
            assert_eq!(
                parse(&wire, 65536),
                Ok(Parsed::Complete(
                    ClientHello {
                        server_name: Some("example.com".into()),
                        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    },
                    hello_len
                ))
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", 65536), Err(HelloError::NotTls));
        assert_eq!(parse(b"G", 65536), Err(HelloError::NotTls));
        let plain = encode_client_hello(None, &[], MAX_RECORD);
        assert!(matches!(
            parse(&plain, 65536),
            Ok(Parsed::Complete(
                ClientHello {
                    server_name: None,
                    ..
                },
                _
            ))
        ));
        let big = encode_client_hello(Some("a.example"), &[], MAX_RECORD);
        assert_eq!(parse(&big, 20), Err(HelloError::TooLarge));
        let mut bad_name = encode_client_hello(Some("a b"), &[], MAX_RECORD);
        assert_eq!(
            parse(&bad_name, 65536),
            Err(HelloError::Malformed("server name is not a host name"))
        );
        // A server hello (type 2) is no client hello.
        bad_name[5] = 2;
        assert_eq!(parse(&bad_name, 65536), Err(HelloError::NotClientHello));
    }
}
