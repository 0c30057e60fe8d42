#!/usr/bin/env bash
# Sustained load (issue 16): `walctl record` for SECONDS (default 60) per row — as fast as the
# writer goes with one compression helper and with compression on the maintainer's loop,
# then paced at 5 M/s and 2 M/s — 64 MiB segments, max-segments 4, max-compressed 8, a disk
# budget of BUDGET bytes (default 2 GiB), sampling the directory every 100 ms; the disk's
# sustained write rate (dd) is measured in the same run. Writes
# results/<date>-sustained/{table.md,samples.csv,sustained.png}.
#   scripts/bench-sustained.sh [SECONDS] [BUDGET]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
budget="${2:-2147483648}"
out="${SUSTAINED_OUT:-results/$(date -u +%Y-%m-%d)-sustained}"
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"
cargo build --release --bin walctl -q
d=$(mktemp -d -p "$BENCH_DIR")
trap 'rm -rf "$d"' EXIT
python3 scripts/sustained.py target/release/walctl "$out" "$d" "$secs" "$budget"
