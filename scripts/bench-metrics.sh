#!/usr/bin/env bash
# The cost of fs1-metrics on the writer: the writer-latency benchmark built without and with
# the feature, run one after the other in this script, alternating ROUNDS times; prints the
# median p99.9 and p99.99 of each build and their ratios (goal: p99.9 within 5 %).
# Usage: scripts/bench-metrics.sh [records] [rate/s] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}; rate=${2:-1000000}; rounds=${3:-3}
variants=${BENCH_VARIANTS:-no-timer-sync,idle-only-sync}
out=$(mktemp -d)
cargo build --release --bench writer_latency -q 2>/dev/null || true
for i in $(seq "$rounds"); do
  BENCH_VARIANTS=$variants cargo bench -q --bench writer_latency -- "$records" "$rate" > "$out/off.$i"
  BENCH_VARIANTS=$variants cargo bench -q --features fs1-metrics --bench writer_latency -- "$records" "$rate" > "$out/on.$i"
done
python3 - "$out" "$rounds" <<'PY'
import sys, statistics, glob
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(path):
    r = {}
    for line in open(path):
        f = [x.strip() for x in line.strip().strip('|').split('|')]
        if len(f) >= 6 and f[1].isdigit():
            r[f[0]] = (int(f[3]), int(f[4]))
    return r
off = [rows(f"{out}/off.{i}") for i in range(1, rounds + 1)]
on = [rows(f"{out}/on.{i}") for i in range(1, rounds + 1)]
print("| variant | p99.9 off | p99.9 on | ratio | p99.99 off | p99.99 on | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for v in off[0]:
    m = lambda runs, k: statistics.median(r[v][k] for r in runs)
    a, b, c, d = m(off, 0), m(on, 0), m(off, 1), m(on, 1)
    print(f"| {v} | {a:.0f} | {b:.0f} | {b / a:.2f} | {c:.0f} | {d:.0f} | {d / c:.2f} |")
PY
