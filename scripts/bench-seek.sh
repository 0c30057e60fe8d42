#!/usr/bin/env bash
# Seek by time beside seek by sequence number in a log of 1 000 cold segments of 4 MiB with
# time (issue 26), warm and (as root) with a cold page cache, alternated in rounds. The log is
# generated once under $BENCH_DIR/seek-logs (about 2 GB).
#   scripts/bench-seek.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"
cargo bench -q --bench seek -- "${1:-3}"
