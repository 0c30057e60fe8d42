#!/usr/bin/env bash
# Tailing latency (a tailer in another process, 1 M/s and 100 k/s) and seek time (issue 15).
# The seek part uses the 1 000-segment log of scripts/bench-open.sh (generated if missing).
#   scripts/bench-tail.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"
rounds="${1:-3}"
cargo build --release --benches -q
cargo bench -q --bench tail -- latency 1000000 2000000 "$rounds"
cargo bench -q --bench tail -- latency 100000 500000 "$rounds"
[ -f "$BENCH_DIR/open-logs/1000x4MiB.generated" ] || cargo bench -q --bench open -- quick 1 >/dev/null
cargo bench -q --bench tail -- seek "$BENCH_DIR/open-logs/1000x4MiB"
