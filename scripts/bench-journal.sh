#!/usr/bin/env bash
# Durability lag of the staged write path with fallocated segment files against zero-filled
# ones (Config::zero_fill), on this machine's file system and on a journaled ext4 loop mount
# (data=ordered, the common default), in alternating rounds. Needs root (loop mount).
# Usage: scripts/bench-journal.sh [records] [rate/s] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-6000000}
rate=${2:-1000000}
rounds=${3:-2}
cargo build --release --bin walctl -q
work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
img="$work/journal.img"
mnt="$work/mnt"
mkdir -p "$mnt"
truncate -s 4G "$img"
mkfs.ext4 -q -F "$img"
mount -o loop "$img" "$mnt"
trap 'umount "$mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "durability lag of $records appends at $rate/s, 64 MiB segments; ms"
echo "| file system | zero_fill | round | lag p50 | lag p99 | lag max | writer p99.9 ns |"
echo "|---|---|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
  for fs in "this machine ($(df -T "$work" | awk 'NR==2 {print $2}'))" "journaled ext4 (loop)"; do
    case "$fs" in journaled*) base="$mnt" ;; *) base="$work" ;; esac
    for zero in false true; do
      rm -rf "$base/log"
      j=$(target/release/walctl record "$base/log" --records "$records" --rate "$rate" --zero-fill "$zero" --json)
      python3 -c 'import json,sys; v=json.loads(sys.argv[1]); l=v["durability_lag_ns"]; print("| %s | %s | %s | %.2f | %.2f | %.2f | %d |" % (sys.argv[2], sys.argv[3], sys.argv[4], l["p50"]/1e6, l["p99"]/1e6, l["max"]/1e6, v["latency_ns"]["p999"]))' "$j" "$fs" "$zero" "$round"
      sleep 10 # let the VM report the freed staging memory before the next run
    done
  done
done
