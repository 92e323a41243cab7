//! Sets `tcp_misc_opts` on a connection and `udp_misc_opts` on a UDP socket. An option the
//! kernel refuses is logged and the socket kept: a socket option is a tuning, not a reason
//! to turn a client away.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;

use g3proxy_shared::types::{TcpMiscOpts, UdpMiscOpts};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::TcpStream;

/// Collects the first error while every option is still tried.
#[derive(Default)]
struct FirstError(Option<io::Error>);

impl FirstError {
    fn keep(&mut self, result: nix::Result<()>, what: &str) {
        if let Err(errno) = result
            && self.0.is_none()
        {
            self.0 = Some(io::Error::other(format!("{what}: {errno}")));
        }
    }

    fn into_result(self) -> io::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The IP-level options (those `udp_misc_opts` has; TCP has them too). IPv4 options go to
/// an IPv4 peer, IPv4-mapped ones on an IPv6 socket included (Linux takes them there); IPv6
/// ones to an IPv6 peer.
fn apply_ip_level<F: AsFd>(socket: &F, ipv6: bool, opts: &UdpMiscOpts, errors: &mut FirstError) {
    if let Some(ttl) = opts.time_to_live
        && !ipv6
    {
        errors.keep(
            setsockopt(socket, sockopt::Ipv4Ttl, &i32::from(ttl)),
            "time_to_live",
        );
    }
    if let Some(hops) = opts.hop_limit
        && ipv6
    {
        errors.keep(
            setsockopt(socket, sockopt::Ipv6Ttl, &i32::from(hops)),
            "hop_limit",
        );
    }
    if let Some(tos) = opts.type_of_service
        && !ipv6
    {
        errors.keep(
            setsockopt(socket, sockopt::Ipv4Tos, &i32::from(tos)),
            "type_of_service",
        );
    }
    if let Some(class) = opts.traffic_class
        && ipv6
    {
        errors.keep(
            setsockopt(socket, sockopt::Ipv6TClass, &i32::from(class)),
            "traffic_class",
        );
    }
    if let Some(mark) = opts.netfilter_mark {
        errors.keep(setsockopt(socket, sockopt::Mark, &mark), "netfilter_mark");
    }
}

/// Applies `opts` to `tcp`; the first error, if any, after trying every option.
pub fn apply(tcp: &TcpStream, opts: &TcpMiscOpts) -> io::Result<()> {
    let ipv6 = tcp
        .peer_addr()
        .map(|a| a.ip().to_canonical().is_ipv6())
        .unwrap_or(false);
    apply_tcp(tcp, ipv6, opts)
}

/// The same on a socket toward an `ipv6` (or IPv4) peer, not connected yet: an escaper's
/// options go on before its connect, where the MSS has to be to count.
pub fn apply_tcp<F: AsFd>(tcp: &F, ipv6: bool, opts: &TcpMiscOpts) -> io::Result<()> {
    let mut errors = FirstError::default();
    if let Some(on) = opts.no_delay {
        errors.keep(setsockopt(tcp, sockopt::TcpNoDelay, &on), "no_delay");
    }
    if let Some(mss) = opts.max_segment_size {
        errors.keep(
            setsockopt(tcp, sockopt::TcpMaxSeg, &mss),
            "max_segment_size",
        );
    }
    apply_ip_level(tcp, ipv6, &opts.ip_level(), &mut errors);
    if let Some(algorithm) = &opts.congestion_control {
        let name = OsString::from(algorithm);
        errors.keep(
            setsockopt(tcp, sockopt::TcpCongestion, &name),
            "congestion_control",
        );
    }
    errors.into_result()
}

/// Applies `opts` (an escaper's `udp_misc_opts`) to a UDP socket that sends to `peer`; one
/// the kernel refuses is logged and the socket used as it is.
pub fn apply_udp<F: AsFd>(socket: &F, peer: std::net::SocketAddr, opts: &UdpMiscOpts) {
    if *opts == UdpMiscOpts::default() {
        return;
    }
    let mut errors = FirstError::default();
    apply_ip_level(socket, peer.is_ipv6(), opts, &mut errors);
    if let Err(e) = errors.into_result() {
        tracing::debug!("udp_misc_opts toward {peer}: {e}");
    }
}
