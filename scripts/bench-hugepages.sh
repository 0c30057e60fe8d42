#!/usr/bin/env bash
# Writer latency and durability lag of the staged path with the staging buffers on a plain
# tmpfs (/dev/shm) against a tmpfs mounted with huge=always (2 MiB pages: fewer TLB misses
# for the writer), alternating in rounds. Needs root (mount). Each run is followed by a
# 10 s pause: walctl frees its staging memory on the writer's core at exit, and this VM
# reports freed pages to the host from that core seconds later, which stalled the next run's
# writer for tens of milliseconds without the pause. Each run is followed by a
# 10 s pause: walctl frees its staging memory on the writer's core at exit, and this VM
# reports freed pages to the host from that core seconds later, which stalled the next run's
# writer for tens of milliseconds before the pause was added.
# Usage: scripts/bench-hugepages.sh [records] [rate/s] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-4000000}
rate=${2:-1000000}
rounds=${3:-3}
cargo build --release --bin walctl -q
work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
huge=$(mktemp -d)
mount -t tmpfs -o huge=always,size=1G,mode=1777 tmpfs "$huge"
trap 'umount "$huge" 2>/dev/null || true; rmdir "$huge"; rm -rf "$work"' EXIT
echo "$records appends at $rate/s, 64 MiB segments, staging buffers on:"
echo "| staging | round | p50 ns | p99 ns | p99.9 ns | p99.99 ns | max ns | lag p99 ms | writer page faults |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
  for staging in /dev/shm "$huge"; do
    rm -rf "$work/log"
    j=$(target/release/walctl record "$work/log" --records "$records" --rate "$rate" --staging-dir "$staging" --json)
    name=$([ "$staging" = /dev/shm ] && echo "tmpfs (4 KiB pages)" || echo "tmpfs huge=always")
    python3 -c 'import json,sys; v=json.loads(sys.argv[1]); l=v["latency_ns"]; print("| %s | %s | %d | %d | %d | %d | %d | %.2f | %d |" % (sys.argv[2], sys.argv[3], l["p50"], l["p99"], l["p999"], l["p9999"], l["max"], v["durability_lag_ns"]["p99"]/1e6, v["writer"]["page_faults"]))' "$j" "$name" "$round"
    sleep 10
  done
done
