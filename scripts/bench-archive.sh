#!/usr/bin/env bash
# What the archive tier costs the writer: the writer-latency benchmark (paced, CO-corrected)
# with 4 MiB segments, so that a run freezes and archives dozens of them, and
# sync_while_busy = false; without (baseline) and with a file:// archive. Each variant runs in
# its own process, alternated for ROUNDS rounds, so neither always runs first; the table has
# the medians and their ratios to the baseline measured in the same run.
# Usage: scripts/bench-archive.sh [records] [rate/s]   (ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-4000000}
rate=${2:-1000000}
rounds=${ROUNDS:-3}
cargo bench --features archive --bench writer_latency --no-run -q
out=$(mktemp)
for r in $(seq "$rounds"); do
    for v in idle-only-sync idle-only-sync-archive; do
        BENCH_SEGMENT_SIZE=$((4 << 20)) BENCH_VARIANTS=$v \
            cargo bench -q --features archive --bench writer_latency -- "$records" "$rate" \
            2>&1 | grep -E "^\| $v |uploaded" | tee -a "$out"
    done
done
python3 - "$out" "$rounds" "$records" "$rate" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("| "):
        continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    rows.setdefault(cells[0], []).append([int(c) for c in cells[1:6]])
base = "idle-only-sync"
med = {v: [statistics.median(col) for col in zip(*r)] for v, r in rows.items()}
print(f"\nmedians of {sys.argv[2]} alternating rounds, {sys.argv[3]} appends at {sys.argv[4]}/s, ns:")
print("| variant | p50 | p99 | p99.9 | p99.99 | max | p99.9 / baseline | p99.99 / baseline |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for v, m in med.items():
    r3, r4 = m[2] / med[base][2], m[3] / med[base][3]
    print(f"| {v} | " + " | ".join(f"{x:.0f}" for x in m) + f" | {r3:.2f} | {r4:.2f} |")
PY
rm -f "$out"
