#!/usr/bin/env bash
# The sustained run under a disk budget on a small tmpfs (issue 25): the issue's own command,
# `walctl record D --records 20000000 --segment-size 4M --max-segments 2 --max-compressed 1000
# --max-disk-bytes 48M` on a 96 MiB tmpfs, the directory's bytes sampled every 100 ms, and
# the writer's throughput reported as a ratio of the freeze rate measured in the same run.
# Needs root (it mounts the tmpfs) and fails loudly without it.
#   scripts/budget-tmpfs.sh [ROUNDS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
out="${2:-results/$(date -u +%Y-%m-%d)-budget-tmpfs}"
[ "$(id -u)" = 0 ] || { echo "budget-tmpfs.sh: needs root to mount a tmpfs" >&2; exit 1; }
cargo build --release --bin walctl -q
mnt=$(mktemp -d)
mount -t tmpfs -o size=96m tmpfs "$mnt"
trap 'umount "$mnt"; rmdir "$mnt"' EXIT
mkdir -p "$out"
python3 scripts/budget-tmpfs.py target/release/walctl "$mnt" "$out" "$rounds"
