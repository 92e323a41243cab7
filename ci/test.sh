#!/usr/bin/env bash
# The whole test suite: unit tests, parser tests and the end-to-end scenarios, which run
# the real binaries (built first) on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
