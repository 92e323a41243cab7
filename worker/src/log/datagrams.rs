//! A batch of datagrams for the datagram drivers (syslog, journal), sent with `sendmmsg` on
//! a connected socket: one system call for up to [`PER_CALL`] events instead of one each.
//! The bytes of every datagram share one buffer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Datagrams handed to the kernel in one call at most.
const PER_CALL: usize = 256;

#[derive(Default)]
pub struct Datagrams {
    bytes: Vec<u8>,
    /// Where each datagram ends in `bytes`.
    ends: Vec<usize>,
}

impl Datagrams {
    /// The buffer to write the next datagram into; [`Datagrams::end`] closes it.
    pub fn open(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Closes the datagram written since the last one; answers its size.
    pub fn end(&mut self) -> usize {
        let start = self.ends.last().copied().unwrap_or(0);
        self.ends.push(self.bytes.len());
        self.bytes.len() - start
    }

    /// Sends every datagram on `socket` (connected), in order; answers how many went before
    /// the first the kernel refused (the rest are dropped with the batch).
    pub fn send(&mut self, socket: BorrowedFd<'_>) -> usize {
        let mut sent = 0;
        while sent < self.ends.len() {
            match self.send_some(socket, sent) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        self.clear();
        sent
    }

    /// Sends every datagram on `socket`, connected to `path` first when it is not (and again
    /// after a batch it took none of: the listener may have been restarted); a socket that
    /// cannot connect loses the batch.
    pub fn send_to_path(&mut self, socket: &mut Option<UnixDatagram>, path: &Path) -> usize {
        if socket.is_none() {
            *socket = UnixDatagram::unbound()
                .and_then(|unbound| unbound.connect(path).map(|()| unbound))
                .ok();
        }
        let Some(connected) = socket else {
            self.clear();
            return 0;
        };
        let sent = self.send(connected.as_fd());
        if sent == 0 {
            *socket = None;
        }
        sent
    }

    /// Drops the batch unsent.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// One `sendmmsg` from datagram `first` on.
    fn send_some(&mut self, socket: BorrowedFd<'_>, first: usize) -> io::Result<usize> {
        let last = self.ends.len().min(first + PER_CALL);
        let mut iovecs: Vec<libc::iovec> = (first..last)
            .map(|i| {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                libc::iovec {
                    iov_base: self.bytes[start..].as_mut_ptr().cast(),
                    iov_len: self.ends[i] - start,
                }
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iovec| {
                // SAFETY: an all-zero msghdr is valid (no name, no control data).
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        loop {
            // SAFETY: `headers` holds `headers.len()` messages whose iovecs point into
            // `self.bytes`, all alive and unmoved for the call.
            let sent = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr(),
                    headers.len() as libc::c_uint,
                    0,
                )
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_arrives_datagram_by_datagram() {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        let mut batch = Datagrams::default();
        for text in ["one", "two!", "three"] {
            batch.open().extend_from_slice(text.as_bytes());
            assert_eq!(batch.end(), text.len());
        }
        assert_eq!(batch.send(ours.as_fd()), 3);
        // Sent is gone: nothing goes twice.
        assert_eq!(batch.send(ours.as_fd()), 0);
        let mut buffer = [0u8; 64];
        for text in ["one", "two!", "three"] {
            let n = theirs.recv(&mut buffer).unwrap();
            assert_eq!(&buffer[..n], text.as_bytes());
        }
    }

    #[test]
    fn a_refused_batch_is_dropped() {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        drop(theirs);
        let mut batch = Datagrams::default();
        batch.open().extend_from_slice(b"lost");
        batch.end();
        assert_eq!(batch.send(ours.as_fd()), 0);
    }
}
