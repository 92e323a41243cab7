//! Length-prefixed frames for the IPC between g3proxy processes (supervisor ↔ worker, ctl →
//! supervisor, successor → predecessor).
//!
//! A frame is a 4-byte big-endian payload length followed by the payload. The payload's meaning
//! (and its protocol version) belongs to `shared::ipc`; this layer only splits a byte stream.

use crate::Parsed;

/// Frames larger than this are refused: a config snapshot is the largest thing we ship.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;
const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge(usize),
}

/// Finds the first frame in `buf`. On success the payload is `buf[4..consumed]`.
pub fn decode(buf: &[u8]) -> Result<Parsed<&[u8]>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(Parsed::Partial);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    match buf.get(HEADER_LEN..HEADER_LEN + len) {
        Some(payload) => Ok(Parsed::Complete(payload, HEADER_LEN + len)),
        None => Ok(Parsed::Partial),
    }
}

/// Appends one frame holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(payload.len()));
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_prefix_is_partial() {
        let mut wire = Vec::new();
        encode(b"{\"hello\":1}", &mut wire).unwrap();
        encode(b"", &mut wire).unwrap();
        let first_len = 4 + 11;
        for cut in 0..first_len {
            assert_eq!(decode(&wire[..cut]), Ok(Parsed::Partial), "prefix {cut}");
        }
        assert_eq!(
            decode(&wire),
            Ok(Parsed::Complete(&b"{\"hello\":1}"[..], first_len))
        );
        assert_eq!(
            decode(&wire[first_len..]),
            Ok(Parsed::Complete(&b""[..], 4))
        );
    }

    #[test]
    fn oversized_length_is_refused_before_reading_it() {
        let wire = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode(&wire), Err(FrameError::TooLarge(0xffff_ffff)));
    }
}
