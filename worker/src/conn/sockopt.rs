//! Sets `tcp_misc_opts` on a connection and `udp_misc_opts` on a UDP socket. An option the
//! kernel refuses is logged and the socket kept: a socket option is a tuning, not a reason
//! to turn a client away.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;

use g3proxy_shared::types::{TcpMiscOpts, UdpMiscOpts};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::TcpStream;

/// The IP-level options both protocols take.
struct IpLevel {
    time_to_live: Option<u8>,
    hop_limit: Option<u8>,
    type_of_service: Option<u8>,
    traffic_class: Option<u8>,
    netfilter_mark: Option<u32>,
}

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

/// IPv4 options go to an IPv4 peer, IPv4-mapped ones on an IPv6 socket included (Linux
/// takes them there); IPv6 ones to an IPv6 peer.
fn apply_ip_level<F: AsFd>(socket: &F, ipv6: bool, opts: &IpLevel, errors: &mut FirstError) {
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
    let ip_level = IpLevel {
        time_to_live: opts.time_to_live,
        hop_limit: opts.hop_limit,
        type_of_service: opts.type_of_service,
        traffic_class: opts.traffic_class,
        netfilter_mark: opts.netfilter_mark,
    };
    apply_ip_level(tcp, ipv6, &ip_level, &mut errors);
    if let Some(algorithm) = &opts.congestion_control {
        let name = OsString::from(algorithm);
        errors.keep(
            setsockopt(tcp, sockopt::TcpCongestion, &name),
            "congestion_control",
        );
    }
    errors.into_result()
}

/// Applies `opts` to a UDP socket that sends to `ipv6` (or IPv4) peers.
pub fn apply_udp<F: AsFd>(socket: &F, ipv6: bool, opts: &UdpMiscOpts) -> io::Result<()> {
    let mut errors = FirstError::default();
    let ip_level = IpLevel {
        time_to_live: opts.time_to_live,
        hop_limit: opts.hop_limit,
        type_of_service: opts.type_of_service,
        traffic_class: opts.traffic_class,
        netfilter_mark: opts.netfilter_mark,
    };
    apply_ip_level(socket, ipv6, &ip_level, &mut errors);
    errors.into_result()
}
