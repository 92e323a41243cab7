//! `passphrase-hash`: a token for a user's config, as the guide's `passphrase_hash.py` makes
//! them: a random 8-byte salt and the password's salted MD5, SHA-1 and BLAKE3. The password
//! is read from standard input (one line), never from the command line, where `ps` and the
//! shell's history would keep it.

use std::io::{BufRead, Read};

use g3proxy_shared::types::Token;

pub fn run() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    let mut salt = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut salt))
        .map_err(|e| format!("no random salt: {e}"))?;
    Ok(format!(
        "token:\n{}",
        Token::fast_hash_yaml(password.as_bytes(), &salt)
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect::<String>()
    ))
}
