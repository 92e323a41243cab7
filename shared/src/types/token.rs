//! A user's `token`: what a password is checked against, in g3proxy's forms.
//!
//! - a map `{salt, md5, sha1, blake3}` (optionally `type: fast_hash`): each hash given is
//!   of the password's bytes followed by the salt's bytes (the salt is written in hex); all
//!   given must match;
//! - a crypt(5) string `$1$…`, `$5$…`, `$6$…`, or `{type: xcrypt_hash, value: …}`;
//! - `null`: the password is not checked;
//! - no `token` at all: every password is refused.
//!
//! Tokens never print their hashes (`Debug` names only the form), so a config dump in a log
//! carries nothing to attack offline.

use std::fmt;

use md5::{Digest, Md5};
use ring::digest::{self, SHA1_FOR_LEGACY_USE_ONLY};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::crypt::CryptHash;

#[derive(Clone, PartialEq, Eq, Default)]
pub enum Token {
    /// No `token` key: no password is right.
    #[default]
    Missing,
    /// `token: null`: any password is right.
    Unchecked,
    FastHash(FastHash),
    Crypt(CryptHash),
}

#[derive(Clone, PartialEq, Eq)]
pub struct FastHash {
    salt: Vec<u8>,
    md5: Option<[u8; 16]>,
    sha1: Option<[u8; 20]>,
    blake3: Option<[u8; 32]>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Token::Missing => "Token::Missing",
            Token::Unchecked => "Token::Unchecked",
            Token::FastHash(_) => "Token::FastHash(..)",
            Token::Crypt(_) => "Token::Crypt(..)",
        })
    }
}

impl Token {
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Token::Missing => false,
            Token::Unchecked => true,
            Token::FastHash(hash) => hash.verify(password),
            Token::Crypt(hash) => hash.verify(password),
        }
    }

    /// A token nobody's password matches, checked for names that are not users so that a
    /// refusal takes as long as a wrong password (a timing that would tell names apart).
    pub fn decoy() -> Token {
        let mut hash = FastHash::of(b"", b"decoy-salt");
        hash.md5 = Some([0; 16]);
        Token::FastHash(hash)
    }

    /// A fast-hash token for `password` with `salt` (every hash), as the guide's
    /// `passphrase_hash.py` makes them: the map to paste into a user's `token`.
    pub fn fast_hash_yaml(password: &[u8], salt: &[u8]) -> String {
        let hash = FastHash::of(password, salt);
        format!(
            "salt: {}\nmd5: {}\nsha1: {}\nblake3: {}\n",
            hex(salt),
            hex(&hash.md5.unwrap_or_default()),
            hex(&hash.sha1.unwrap_or_default()),
            hex(&hash.blake3.unwrap_or_default()),
        )
    }
}

impl FastHash {
    fn of(password: &[u8], salt: &[u8]) -> FastHash {
        let md5: [u8; 16] = Md5::new()
            .chain_update(password)
            .chain_update(salt)
            .finalize()
            .into();
        let mut sha1 = digest::Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        sha1.update(password);
        sha1.update(salt);
        let sha1: [u8; 20] = sha1.finish().as_ref().try_into().unwrap_or_default();
        let mut blake3 = blake3::Hasher::new();
        blake3.update(password);
        blake3.update(salt);
        FastHash {
            salt: salt.to_vec(),
            md5: Some(md5),
            sha1: Some(sha1),
            blake3: Some(*blake3.finalize().as_bytes()),
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        let salt = &self.salt;
        // Every configured hash is computed and compared, so the time taken does not say
        // which one differed.
        let mut matches = true;
        if let Some(expected) = &self.md5 {
            let computed = Md5::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize();
            matches &= constant_time_eq(&computed, expected);
        }
        if let Some(expected) = &self.sha1 {
            let mut context = digest::Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
            context.update(password);
            context.update(salt);
            matches &= constant_time_eq(context.finish().as_ref(), expected);
        }
        if let Some(expected) = &self.blake3 {
            let mut hasher = blake3::Hasher::new();
            hasher.update(password);
            hasher.update(salt);
            matches &= constant_time_eq(hasher.finalize().as_bytes(), expected);
        }
        matches
    }
}

/// A password's keyed digest, for remembering one that a directory accepted without
/// keeping it: `key` is random per process, so the digest means nothing anywhere else.
pub fn password_digest(key: &[u8; 32], password: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(key, password).as_bytes()
}

/// Equal slices, compared without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold back into an early exit.
    std::hint::black_box(difference) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = unhex_vec(text, what)?;
    bytes
        .try_into()
        .map_err(|_| format!("{what} must be {N} bytes ({} hex digits)", N * 2))
}

fn unhex_vec(text: &str, what: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be written in hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

struct TokenVisitor;

impl<'de> Visitor<'de> for TokenVisitor {
    type Value = Token;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token: a map of salt and md5/sha1/blake3, a crypt string, or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Token, E> {
        Ok(Token::Unchecked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Token, E> {
        Ok(Token::Unchecked)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Token, D::Error> {
        deserializer.deserialize_any(TokenVisitor)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Token, E> {
        CryptHash::parse(text)
            .map(Token::Crypt)
            .map_err(|e| E::custom(e.0))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Token, A::Error> {
        let mut kind: Option<String> = None;
        let (mut salt, mut md5, mut sha1, mut blake3, mut value) = (None, None, None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            let text: String = map.next_value()?;
            let slot = match key.as_str() {
                "type" => &mut kind,
                "salt" => &mut salt,
                "md5" => &mut md5,
                "sha1" => &mut sha1,
                "blake3" => &mut blake3,
                "value" => &mut value,
                other => return Err(de::Error::custom(format!("invalid key {other} in token"))),
            };
            *slot = Some(text);
        }
        match kind.as_deref() {
            Some("xcrypt_hash" | "xcrypt") => {
                let value = value.ok_or_else(|| de::Error::custom("xcrypt_hash needs value"))?;
                return self.visit_str(&value);
            }
            None | Some("fast_hash") => {}
            Some(other) => return Err(de::Error::custom(format!("unknown token type {other}"))),
        }
        let salt = salt.ok_or_else(|| de::Error::custom("a fast_hash token needs salt"))?;
        let hash = FastHash {
            salt: unhex_vec(&salt, "salt").map_err(de::Error::custom)?,
            md5: md5
                .map(|t| unhex(&t, "md5"))
                .transpose()
                .map_err(de::Error::custom)?,
            sha1: sha1
                .map(|t| unhex(&t, "sha1"))
                .transpose()
                .map_err(de::Error::custom)?,
            blake3: blake3
                .map(|t| unhex(&t, "blake3"))
                .transpose()
                .map_err(de::Error::custom)?,
        };
        if hash.md5.is_none() && hash.sha1.is_none() && hash.blake3.is_none() {
            return Err(de::Error::custom(
                "a fast_hash token needs md5, sha1 or blake3",
            ));
        }
        Ok(Token::FastHash(hash))
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(TokenVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guide_vector() -> FastHash {
        FastHash {
            salt: unhex_vec("113323bdab6fd2cc", "salt").unwrap(),
            md5: Some(unhex("5c81f2becadde7fa5fde9026652ccc84", "md5").unwrap()),
            sha1: Some(unhex("ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96", "sha1").unwrap()),
            blake3: None,
        }
    }

    #[test]
    fn the_guides_test_vector() {
        let token = Token::FastHash(guide_vector());
        assert!(token.verify(b"toor"));
        assert!(!token.verify(b"root"));
        assert!(!token.verify(b""));
    }

    #[test]
    fn made_tokens_verify() {
        let yaml = Token::fast_hash_yaml(b"s3cret", b"\x01\x02\x03\x04\x05\x06\x07\x08");
        assert!(yaml.starts_with("salt: 0102030405060708\nmd5: "));
        let made = FastHash::of(b"s3cret", b"\x01\x02\x03\x04\x05\x06\x07\x08");
        assert!(made.verify(b"s3cret"));
        assert!(!made.verify(b"s3cres"));
        let only_blake3 = FastHash {
            md5: None,
            sha1: None,
            ..made.clone()
        };
        assert!(only_blake3.verify(b"s3cret"));
        let wrong_md5 = FastHash {
            md5: Some([0; 16]),
            ..made
        };
        assert!(!wrong_md5.verify(b"s3cret"));
    }

    #[test]
    fn missing_and_unchecked() {
        assert!(!Token::Missing.verify(b"anything"));
        assert!(Token::Unchecked.verify(b"anything"));
        assert_eq!(
            format!("{:?}", Token::FastHash(guide_vector())),
            "Token::FastHash(..)"
        );
    }
}
