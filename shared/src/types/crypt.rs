//! crypt(5) password hashes as `/etc/shadow` writes them: MD5-crypt (`$1$`), SHA-256-crypt
//! (`$5$`) and SHA-512-crypt (`$6$`), the forms g3proxy accepts as a user's `token`.
//! Only checking is needed, so only the derivation is here; the output alphabet and byte
//! orders are those of the reference implementations (FreeBSD's md5crypt, Drepper's
//! SHA-crypt specification).

use md5::{Digest, Md5};
use ring::digest::{self, Algorithm, SHA256, SHA512};

const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-crypt's round count: the default, and the bounds a `rounds=` field is clamped to.
const SHA_ROUNDS_DEFAULT: u32 = 5000;
const SHA_ROUNDS_MIN: u32 = 1000;
const SHA_ROUNDS_MAX: u32 = 999_999_999;

/// Why a crypt string cannot be used as a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptError(pub String);

/// A parsed crypt string, checked once when the config loads.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptHash {
    scheme: Scheme,
    /// The salt between the scheme (and `rounds=N$`) and the hash.
    salt: String,
    /// `rounds=N`, clamped as the reference does; `None`: the default 5000.
    rounds: Option<u32>,
    /// The encoded hash after the last `$`.
    hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Md5,
    Sha256,
    Sha512,
}

impl std::fmt::Debug for CryptHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret of sorts: a config dump must not carry it.
        write!(f, "CryptHash({:?})", self.scheme)
    }
}

impl CryptHash {
    pub fn parse(text: &str) -> Result<CryptHash, CryptError> {
        let bad = |why: &str| CryptError(format!("invalid crypt hash: {why}"));
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("$1$") {
            (Scheme::Md5, rest)
        } else if let Some(rest) = text.strip_prefix("$5$") {
            (Scheme::Sha256, rest)
        } else if let Some(rest) = text.strip_prefix("$6$") {
            (Scheme::Sha512, rest)
        } else {
            return Err(bad(
                "only $1$ (md5), $5$ (sha256) and $6$ (sha512) are supported",
            ));
        };
        let (rounds, rest) = match rest.strip_prefix("rounds=") {
            Some(after) if scheme != Scheme::Md5 => {
                let (count, rest) = after.split_once('$').ok_or_else(|| bad("no salt"))?;
                let count: u32 = count.parse().map_err(|_| bad("bad rounds"))?;
                (Some(count.clamp(SHA_ROUNDS_MIN, SHA_ROUNDS_MAX)), rest)
            }
            _ => (None, rest),
        };
        let (salt, hash) = rest.split_once('$').ok_or_else(|| bad("no hash"))?;
        let max_salt = if scheme == Scheme::Md5 { 8 } else { 16 };
        let expected_len = match scheme {
            Scheme::Md5 => 22,
            Scheme::Sha256 => 43,
            Scheme::Sha512 => 86,
        };
        if salt.len() > max_salt || salt.contains(['$', ':', '\n']) {
            return Err(bad("bad salt"));
        }
        if hash.len() != expected_len || !hash.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(bad("bad hash length or character"));
        }
        Ok(CryptHash {
            scheme,
            salt: salt.to_string(),
            rounds,
            hash: hash.to_string(),
        })
    }

    /// Whether `password` hashes to this value; the comparison takes the same time wherever
    /// the first difference is.
    pub fn verify(&self, password: &[u8]) -> bool {
        let computed = match self.scheme {
            Scheme::Md5 => md5_crypt(password, self.salt.as_bytes()),
            Scheme::Sha256 => sha_crypt(&SHA256, password, self.salt.as_bytes(), self.rounds),
            Scheme::Sha512 => sha_crypt(&SHA512, password, self.salt.as_bytes(), self.rounds),
        };
        super::token::constant_time_eq(computed.as_bytes(), self.hash.as_bytes())
    }
}

/// Appends `count` characters of `value`, least significant six bits first.
fn encode_bits(mut value: u32, count: usize, out: &mut String) {
    for _ in 0..count {
        out.push(ALPHABET[(value & 0x3f) as usize] as char);
        value >>= 6;
    }
}

fn encode_groups(bytes: &[u8], groups: &[(usize, usize, usize)], out: &mut String) {
    for &(a, b, c) in groups {
        let value = (bytes[a] as u32) << 16 | (bytes[b] as u32) << 8 | bytes[c] as u32;
        encode_bits(value, 4, out);
    }
}

/// The encoded hash (after the salt) of FreeBSD's MD5-crypt.
fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut context = Md5::new()
        .chain_update(password)
        .chain_update(b"$1$")
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        context.update(&alternate[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            context.update([0u8]);
        } else {
            context.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut result = context.finalize();
    for round in 0..1000 {
        let mut context = Md5::new();
        if round & 1 == 1 {
            context.update(password);
        } else {
            context.update(result);
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round & 1 == 1 {
            context.update(result);
        } else {
            context.update(password);
        }
        result = context.finalize();
    }
    let mut out = String::with_capacity(22);
    encode_groups(
        &result,
        &[(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)],
        &mut out,
    );
    encode_bits(result[11] as u32, 2, &mut out);
    out
}

/// `length` bytes of `block` repeated.
fn repeat_to(block: &[u8], length: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(length).collect()
}

/// The encoded hash (after the salt) of SHA-crypt with `algorithm` (SHA-256 or SHA-512).
fn sha_crypt(
    algorithm: &'static Algorithm,
    password: &[u8],
    salt: &[u8],
    rounds: Option<u32>,
) -> String {
    let hash = |parts: &[&[u8]]| {
        let mut context = digest::Context::new(algorithm);
        for part in parts {
            context.update(part);
        }
        context.finish()
    };
    let size = algorithm.output_len();
    let alternate = hash(&[password, salt, password]);
    let mut context = digest::Context::new(algorithm);
    context.update(password);
    context.update(salt);
    context.update(&repeat_to(alternate.as_ref(), password.len()));
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            context.update(alternate.as_ref());
        } else {
            context.update(password);
        }
        bits >>= 1;
    }
    let mut result = context.finish();
    let password_block = {
        let mut context = digest::Context::new(algorithm);
        for _ in 0..password.len() {
            context.update(password);
        }
        repeat_to(context.finish().as_ref(), password.len())
    };
    let salt_block = {
        let mut context = digest::Context::new(algorithm);
        for _ in 0..16 + result.as_ref()[0] as usize {
            context.update(salt);
        }
        repeat_to(context.finish().as_ref(), salt.len())
    };
    for round in 0..rounds.unwrap_or(SHA_ROUNDS_DEFAULT) {
        let mut context = digest::Context::new(algorithm);
        if round & 1 == 1 {
            context.update(&password_block);
        } else {
            context.update(result.as_ref());
        }
        if round % 3 != 0 {
            context.update(&salt_block);
        }
        if round % 7 != 0 {
            context.update(&password_block);
        }
        if round & 1 == 1 {
            context.update(result.as_ref());
        } else {
            context.update(&password_block);
        }
        result = context.finish();
    }
    let bytes = result.as_ref();
    let mut out = String::with_capacity(86);
    if size == 32 {
        encode_groups(
            bytes,
            &[
                (0, 10, 20),
                (21, 1, 11),
                (12, 22, 2),
                (3, 13, 23),
                (24, 4, 14),
                (15, 25, 5),
                (6, 16, 26),
                (27, 7, 17),
                (18, 28, 8),
                (9, 19, 29),
            ],
            &mut out,
        );
        encode_bits((bytes[31] as u32) << 8 | bytes[30] as u32, 3, &mut out);
    } else {
        let groups: Vec<(usize, usize, usize)> = (0..21)
            .map(|i| {
                // SHA-512's byte order: each group takes bytes i, i+21, i+42, rotated so
                // that the first byte of the group moves one place per group.
                let (a, b, c) = (i, i + 21, i + 42);
                match i % 3 {
                    0 => (a, b, c),
                    1 => (b, c, a),
                    _ => (c, a, b),
                }
            })
            .collect();
        encode_groups(bytes, &groups, &mut out);
        encode_bits(bytes[63] as u32, 2, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Made with Python's crypt module and `openssl passwd`.
        for (hash, password) in [
            ("$1$rnfSARNK$DJNIbbMpjjSmral92rE3k1", "toor"),
            (
                "$5$saltsalt$KS2O/frx9VfZSuO8w8TmD12pwbGJ87yjt.0fQrwSHU5",
                "toor",
            ),
            (
                "$6$rounds=1000$abcdefgh$y/O6Hj5hz4SiOfY5WcnOv2S7zjlgeWqZ81WUxawTKlxh0uWcEk8q5be5f73KRnR7lYUZQ4.OyzTmphpfQbuL.1",
                "toor",
            ),
            (
                "$6$xyz$BDmP0jwgcE7rJupmgiDusNIop8zGY0BnFJCoLJUX/YXp6ldB7vwCcrfg/BFvDORz3JL0GmjzQkzUXWUlN9Ebq/",
                "toor",
            ),
        ] {
            let parsed = CryptHash::parse(hash).unwrap();
            assert!(parsed.verify(password.as_bytes()), "{hash}");
            assert!(!parsed.verify(b"tooR"), "{hash}");
            assert!(!parsed.verify(b""), "{hash}");
        }
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "$2y$10$abcdefghijklmnopqrstuv",
            "$1$salt",
            "$1$toolongsalt$DJNIbbMpjjSmral92rE3k1",
            "$1$rnfSARNK$DJNIbbMpjjSmral92rE3k",
            "$5$rounds=x$salt$KS2O/frx9VfZSuO8w8TmD12pwbGJ87yjt.0fQrwSHU5",
            "plain",
        ] {
            assert!(CryptHash::parse(bad).is_err(), "{bad}");
        }
    }
}
