//! Sets `tcp_misc_opts` on a connection. An option the kernel refuses is logged and the
//! connection kept: a socket option is a tuning, not a reason to turn a client away.

use std::ffi::OsString;
use std::io;

use g3proxy_shared::types::TcpMiscOpts;
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::TcpStream;

/// Applies `opts` to `tcp`; the first error, if any, after trying every option. IPv4 options
/// go to IPv4 peers, IPv4-mapped ones on an IPv6 socket included (Linux takes them there).
pub fn apply(tcp: &TcpStream, opts: &TcpMiscOpts) -> io::Result<()> {
    let ipv6 = tcp
        .peer_addr()
        .map(|a| a.ip().to_canonical().is_ipv6())
        .unwrap_or(false);
    let mut first_error = None;
    let mut keep = |result: nix::Result<()>, what: &str| {
        if let Err(errno) = result
            && first_error.is_none()
        {
            first_error = Some(io::Error::other(format!("{what}: {errno}")));
        }
    };
    if let Some(on) = opts.no_delay {
        keep(setsockopt(tcp, sockopt::TcpNoDelay, &on), "no_delay");
    }
    if let Some(mss) = opts.max_segment_size {
        keep(
            setsockopt(tcp, sockopt::TcpMaxSeg, &mss),
            "max_segment_size",
        );
    }
    if let Some(ttl) = opts.time_to_live
        && !ipv6
    {
        keep(
            setsockopt(tcp, sockopt::Ipv4Ttl, &i32::from(ttl)),
            "time_to_live",
        );
    }
    if let Some(hops) = opts.hop_limit
        && ipv6
    {
        keep(
            setsockopt(tcp, sockopt::Ipv6Ttl, &i32::from(hops)),
            "hop_limit",
        );
    }
    if let Some(tos) = opts.type_of_service
        && !ipv6
    {
        keep(
            setsockopt(tcp, sockopt::Ipv4Tos, &i32::from(tos)),
            "type_of_service",
        );
    }
    if let Some(class) = opts.traffic_class
        && ipv6
    {
        keep(
            setsockopt(tcp, sockopt::Ipv6TClass, &i32::from(class)),
            "traffic_class",
        );
    }
    if let Some(algorithm) = &opts.congestion_control {
        let name = OsString::from(algorithm);
        keep(
            setsockopt(tcp, sockopt::TcpCongestion, &name),
            "congestion_control",
        );
    }
    if let Some(mark) = opts.netfilter_mark {
        keep(setsockopt(tcp, sockopt::Mark, &mark), "netfilter_mark");
    }
    first_error.map_or(Ok(()), Err)
}
