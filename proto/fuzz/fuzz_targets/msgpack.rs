//! Fuzz target: `g3proxy_proto::checks::msgpack` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| g3proxy_proto::checks::msgpack(data));
