#!/usr/bin/env bash
# Builds and runs the proxy on the shipped default config (etc/): an HTTP proxy on
# 127.0.0.1:13128 and a SOCKS5 proxy on 127.0.0.1:11080, control sockets in /tmp/g3.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
cargo build --release --workspace --bins
exec target/release/g3proxy -c etc/ -G default -C /tmp/g3 -v "$@"
