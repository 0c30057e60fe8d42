#!/usr/bin/env bash
# Open time vs the full check on logs of 100 and 1 000 cold segments of 4 MiB and, with
# `full`, 100 of 64 MiB (issue 14), warm and (as root) with a cold page cache, alternated
# in rounds. The logs are generated once under $BENCH_DIR/open-logs (about 5 GB with `full`).
#   scripts/bench-open.sh [quick|full] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"
cargo bench -q --bench open -- "${1:-full}" "${2:-3}"
