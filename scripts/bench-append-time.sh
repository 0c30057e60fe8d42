#!/usr/bin/env bash
# What the record's timestamp costs the writer: a log without time against one with time,
# alternated rounds in one run (bench/append_time.rs). Usage: scripts/bench-append-time.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench append_time -- "${1:-3}"
