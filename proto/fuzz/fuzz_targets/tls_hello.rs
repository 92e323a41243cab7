//! Fuzz target: `g3proxy_proto::checks::tls_hello` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| g3proxy_proto::checks::tls_hello(data));
