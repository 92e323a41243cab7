#!/usr/bin/env bash
# Runs every fuzz target in proto/fuzz/ (libFuzzer through cargo-fuzz, nightly toolchain) for
# RUNS executions each (default 10 million), starting from the committed corpus, and prints
# executions and the outcome per target. New inputs go to a scratch corpus, not the repo; a
# crash stops with libFuzzer's report and leaves its input in proto/fuzz/artifacts/TARGET/,
# to be added to proto/fuzz/corpus/TARGET/ so the stable replay (proto/tests/corpus.rs)
# keeps it. Not part of the tests. Usage: ci/fuzz.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../proto/fuzz"
RUNS=${1:-10000000}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
scratch=$(mktemp -d /tmp/g3fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    started=$(date +%s)
    if cargo +nightly fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
        -runs="$RUNS" -print_final_stats=1 >"$log" 2>&1; then
        outcome=ok
    else
        outcome="FAILED (see proto/fuzz/artifacts/$target)"
        tail -n 40 "$log"
    fi
    executions=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
    printf '%-16s %12s executions in %5ss: %s\n' "$target" "${executions:-?}" "$(( $(date +%s) - started ))" "$outcome"
done
