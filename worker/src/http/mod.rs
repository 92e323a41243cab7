//! HTTP/1.x serving that `http_proxy` and `http_rproxy` share. A server decides where a
//! request goes and what it adds to it; everything else is here: the client side of a
//! session ([`HttpClient`]: request heads within their timeouts and size, error replies, the
//! close), and one request's forward with its response back ([`forward`]: the head, the body
//! while watching for an early answer, interim responses, the response relayed, both
//! connections kept when they can be), and the session's login ([`SessionLogin`]). Where the upstream connection comes from (kept by the
//! session, or a pool) is an [`UpstreamSource`]; [`UpstreamPool`] keeps them per site.

mod client;
mod forward;
mod login;
mod pool;

pub use client::{Challenge, HttpClient};
pub use forward::{ForwardEnv, Request, UpstreamConn, UpstreamSource, forward};
pub use login::SessionLogin;
pub use pool::UpstreamPool;
