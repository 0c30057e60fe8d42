#!/usr/bin/env bash
# wal-recorder against what users would pick instead (issue 18): raft-engine, okaywal, a
# write_all-per-record file and an mmap'd file, each with a sync every millisecond, against
# the floor and wal-recorder's two write paths, in one run, variants alternated over
# BENCH_ROUNDS rounds (default 3). Writes results/<date>-peers/{table.md,*.csv,*.png}.
#   scripts/bench-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="results/$(date -u +%Y-%m-%d)-peers"
mkdir -p "$out"
export BENCH_DIR="${BENCH_DIR:-$PWD/target}" BENCH_MAX_SECS="${BENCH_MAX_SECS:-10}"
export BENCH_VARIANTS="${BENCH_VARIANTS:-staged,direct,raft-engine,okaywal,fs-write,mmap-file}"
cargo build --release --bench compare -q
{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
  cargo bench -q --bench compare -- 4000000 paced:1000000 "$out"
  cargo bench -q --bench compare -- 1000000 paced:200000 "$out"
  cargo bench -q --bench compare -- 5000 paced:1000 "$out"
  cargo bench -q --bench compare -- 4000000 fast "$out"
} 2> "$out/stderr.txt" | tee "$out/table.md"
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib || true
python3 scripts/plot.py "$out" || echo "plotting failed (matplotlib missing?)"
