//! Sending and receiving IPC frames together with file descriptors (SCM_RIGHTS) on blocking
//! Unix stream sockets.
//!
//! The descriptors travel with the first bytes of their frame; Linux never merges a read across
//! an ancillary-data boundary, so they arrive with the frame that lists them.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use g3proxy_proto::Parsed;
use g3proxy_proto::frame;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Linux refuses more descriptors than this in one message (SCM_MAX_FD).
pub const MAX_FDS_PER_FRAME: usize = 253;

/// Writes one whole `frame` (already encoded) with `fds` attached.
pub fn send_frame(socket: &UnixStream, frame: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS_PER_FRAME {
        return Err(io::Error::other(format!(
            "{} descriptors exceed the limit of {MAX_FDS_PER_FRAME} per message",
            fds.len()
        )));
    }
    let mut sent = 0;
    if !fds.is_empty() {
        let rights = [ControlMessage::ScmRights(fds)];
        sent = loop {
            match sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(frame)],
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
    }
    let mut writer = socket;
    writer.write_all(&frame[sent..])
}

/// Reads until one whole frame is in `buffer`; returns its payload and any descriptors that
/// came with it, or `None` at a clean end of stream.
pub fn recv_frame(
    socket: &UnixStream,
    buffer: &mut Vec<u8>,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    loop {
        match frame::decode(buffer).map_err(io::Error::other)? {
            Parsed::Complete(payload, used) => {
                let payload = payload.to_vec();
                buffer.drain(..used);
                return Ok(Some((payload, fds)));
            }
            Parsed::Partial => {}
        }
        let mut chunk = vec![0u8; 64 * 1024];
        let mut control = nix::cmsg_space!([RawFd; MAX_FDS_PER_FRAME]);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let received = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                for cmsg in message.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // The kernel just installed these descriptors in our table; we own them.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                message.bytes
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if received == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed mid-frame",
                ))
            };
        }
        buffer.extend_from_slice(&chunk[..received]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn frames_carry_descriptors() {
        let (left, right) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let mut big = Vec::new();
        frame::encode(&vec![7u8; 300_000], &mut big).unwrap();
        let sender = std::thread::spawn(move || {
            send_frame(&left, &big, &[file.as_fd().as_raw_fd()]).unwrap();
            let mut small = Vec::new();
            frame::encode(b"second", &mut small).unwrap();
            send_frame(&left, &small, &[]).unwrap();
        });
        let mut buffer = Vec::new();
        let (payload, fds) = recv_frame(&right, &mut buffer).unwrap().unwrap();
        assert_eq!(payload.len(), 300_000);
        assert_eq!(fds.len(), 1);
        let mut text = String::new();
        std::fs::File::from(fds.into_iter().next().unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.starts_with(&std::process::id().to_string()));
        let (payload, fds) = recv_frame(&right, &mut buffer).unwrap().unwrap();
        assert_eq!((payload.as_slice(), fds.len()), (&b"second"[..], 0));
        sender.join().unwrap();
        assert!(recv_frame(&right, &mut buffer).unwrap().is_none());
    }
}
