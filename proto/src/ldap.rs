//! The one LDAP exchange a proxy needs (RFC 4511): a simple bind, to check a user's password
//! against a directory. BER as LDAP restricts it: definite lengths, short or long form.
//!
//! [`encode_simple_bind`] writes a BindRequest; [`parse_bind_response`] reads the answer's
//! message id and result code (0 success, 49 invalid credentials); [`escape_dn_value`]
//! makes a user name safe inside a DN (RFC 4514), so a name cannot reach another entry.

use crate::Parsed;

/// `resultCode` values a bind answers with.
pub const SUCCESS: u32 = 0;
pub const INVALID_CREDENTIALS: u32 = 49;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    #[error("malformed ldap message")]
    Malformed,
    #[error("ldap message larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a bind response")]
    NotBindResponse,
}

/// A bind's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindResult {
    pub message_id: u32,
    pub result_code: u32,
}

fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let bytes = length.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn push_element(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_length(out, content.len());
    out.extend_from_slice(content);
}

fn integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    let mut out = Vec::with_capacity(5);
    // A set top bit would read as negative: a leading zero keeps it positive.
    if bytes[start] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[start..]);
    out
}

/// An LDAPv3 BindRequest with simple authentication.
pub fn encode_simple_bind(message_id: u32, dn: &str, password: &[u8]) -> Vec<u8> {
    let mut bind = Vec::with_capacity(dn.len() + password.len() + 16);
    push_element(&mut bind, 0x02, &integer(3));
    push_element(&mut bind, 0x04, dn.as_bytes());
    // [0] simple: a context-specific primitive OCTET STRING.
    push_element(&mut bind, 0x80, password);
    let mut message = Vec::with_capacity(bind.len() + 16);
    push_element(&mut message, 0x02, &integer(message_id));
    // [APPLICATION 0] constructed: BindRequest.
    push_element(&mut message, 0x60, &bind);
    let mut out = Vec::with_capacity(message.len() + 8);
    push_element(&mut out, 0x30, &message);
    out
}

/// One BER element: its tag, its content, and how many bytes it took.
type Element<'a> = (u8, &'a [u8], usize);

/// The element `buf` starts with, or `None` if `buf` holds only part of it.
fn element(buf: &[u8], max: usize) -> Result<Option<Element<'_>>, LdapError> {
    let [tag, first, rest @ ..] = buf else {
        return Ok(None);
    };
    let (length, header) = if first & 0x80 == 0 {
        (*first as usize, 2)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 {
            return Err(LdapError::Malformed);
        }
        let Some(bytes) = rest.get(..count) else {
            return Ok(None);
        };
        let length = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (length, 2 + count)
    };
    let total = header.checked_add(length).ok_or(LdapError::Malformed)?;
    if total > max {
        return Err(LdapError::TooLarge(max));
    }
    match buf.get(header..total) {
        Some(content) => Ok(Some((*tag, content, total))),
        None => Ok(None),
    }
}

fn read_integer(content: &[u8]) -> Result<u32, LdapError> {
    if content.is_empty() || content.len() > 5 || (content.len() == 5 && content[0] != 0) {
        return Err(LdapError::Malformed);
    }
    Ok(content.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32))
}

/// An element that must be whole: inside a complete message, a part is malformed.
fn complete(inner: &[u8], max: usize) -> Result<Element<'_>, LdapError> {
    element(inner, max)?.ok_or(LdapError::Malformed)
}

/// Reads one LDAPMessage holding a BindResponse from `buf` (at most `max` bytes).
pub fn parse_bind_response(buf: &[u8], max: usize) -> Result<Parsed<BindResult>, LdapError> {
    let Some((tag, message, used)) = element(buf, max)? else {
        return Ok(Parsed::Partial);
    };
    if tag != 0x30 {
        return Err(LdapError::Malformed);
    }
    let (id_tag, id, id_used) = complete(message, max)?;
    if id_tag != 0x02 {
        return Err(LdapError::Malformed);
    }
    let message_id = read_integer(id)?;
    let (op_tag, op, _) = complete(&message[id_used..], max)?;
    // [APPLICATION 1] constructed: BindResponse.
    if op_tag != 0x61 {
        return Err(LdapError::NotBindResponse);
    }
    let (code_tag, code, _) = complete(op, max)?;
    // resultCode is an ENUMERATED.
    if code_tag != 0x0a {
        return Err(LdapError::Malformed);
    }
    Ok(Parsed::Complete(
        BindResult {
            message_id,
            result_code: read_integer(code)?,
        },
        used,
    ))
}

/// A DN attribute value with RFC 4514's special characters escaped.
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (index == 0 && matches!(c, '#' | ' '))
            || (index == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_request_bytes() {
        // A bind of cn=a with password b, message id 1.
        assert_eq!(
            encode_simple_bind(1, "cn=a", b"b"),
            [
                0x30, 0x11, 0x02, 0x01, 0x01, 0x60, 0x0c, 0x02, 0x01, 0x03, 0x04, 0x04, b'c', b'n',
                b'=', b'a', 0x80, 0x01, b'b'
            ]
        );
        let long = encode_simple_bind(300, &"x".repeat(200), b"");
        assert_eq!(&long[..4], &[0x30, 0x81, 0xd7, 0x02]);
    }

    #[test]
    fn bind_responses() {
        let wire = [
            0x30, 0x0c, 0x02, 0x01, 0x07, 0x61, 0x07, 0x0a, 0x01, 0x31, 0x04, 0x00, 0x04, 0x00,
        ];
        for cut in 0..wire.len() {
            assert_eq!(parse_bind_response(&wire[..cut], 256), Ok(Parsed::Partial));
        }
        assert_eq!(
            parse_bind_response(&wire, 256),
            Ok(Parsed::Complete(
                BindResult {
                    message_id: 7,
                    result_code: INVALID_CREDENTIALS
                },
                wire.len()
            ))
        );
        assert_eq!(parse_bind_response(&wire, 8), Err(LdapError::TooLarge(8)));
        let search = [0x30, 0x05, 0x02, 0x01, 0x07, 0x64, 0x00];
        assert_eq!(
            parse_bind_response(&search, 256),
            Err(LdapError::NotBindResponse)
        );
        assert!(parse_bind_response(&[0x30, 0x85, 1, 1, 1, 1, 1], 256).is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(integer(0), [0]);
        assert_eq!(integer(127), [127]);
        assert_eq!(integer(128), [0, 128]);
        assert_eq!(integer(300), [1, 44]);
        assert_eq!(read_integer(&integer(0x8000_0000)).unwrap(), 0x8000_0000);
    }

    #[test]
    fn dn_values() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(escape_dn_value("a,ou=admins"), "a\\,ou\\=admins");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
        assert_eq!(escape_dn_value("#x"), "\\#x");
    }
}
