//! A tiny authoritative DNS server on loopback UDP for resolver tests: it answers A queries
//! for its one name with 127.0.0.1, and NXDOMAIN for anything else.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct FakeDns {
    queries: Arc<AtomicU64>,
}

impl FakeDns {
    pub fn start(port: u16, name: &str) -> FakeDns {
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind dns port");
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        let name = name.to_ascii_lowercase();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((length, peer)) = socket.recv_from(&mut buffer) {
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(answer) = answer(&buffer[..length], &name) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        FakeDns { queries }
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// Builds the response to one query, or `None` for something that is not a query.
fn answer(query: &[u8], name: &str) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let length = *query.get(at)? as usize;
        at += 1;
        if length == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + length)?).to_ascii_lowercase());
        at += length;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let asked = labels.join(".");
    let found = asked == name;
    let mut response = query[..question_end.min(query.len())].to_vec();
    response[2] = 0x84 | (query[2] & 0x01); // response, authoritative, keep RD
    response[3] = if found { 0x00 } else { 0x03 }; // NOERROR or NXDOMAIN
    response[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if found && qtype == 1 {
        response[7] = 1;
        response.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(response)
}
