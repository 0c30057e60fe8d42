#!/usr/bin/env bash
# Runs the benchmarks one at a time, the writer pinned to core 0 and background threads to
# core 1, and writes results/<date>/ (markdown tables, CSV distributions, PNG/SVG plots).
# Each comparison alternates its variants over BENCH_ROUNDS rounds (default 3) and reports
# medians.
#   scripts/bench.sh --quick   about a minute: the floor, Staged and the back-to-back peer
#                              (write_all + sync_data) at 1 M/s; prints the table
#   scripts/bench.sh --peers   the headline comparison with the peers (1 M/s, 200 k/s, 1 000/s,
#                              as fast as possible) in about ten minutes; prints the tables
#   scripts/bench.sh           everything (about 30 minutes)
# Plots use python matplotlib (installed with pip if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--peers" ] && quick=2
out="results/$(date -u +%Y-%m-%d)"
[ $quick = 1 ] && out="$out-quick"
[ $quick = 2 ] && out="$out-peers"
mkdir -p "$out"
command -v lz4 >/dev/null || { echo "the script variant needs the lz4 command (apt-get install lz4)"; exit 1; }
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"

machine() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), $(df -T "$BENCH_DIR" | awk 'NR==2 {print $2}') on $(df "$BENCH_DIR" | awk 'NR==2 {print $1}')"
}

plot() {
  python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib || true
  python3 scripts/plot.py "$out" || echo "plotting failed (matplotlib missing?)"
}

cargo build --release --benches --bin walctl -q
if [ $quick = 1 ]; then
  { machine
    export BENCH_MAX_SECS=5
    BENCH_VARIANTS=staged,fs-write-b2b cargo bench -q --bench compare -- 2000000 paced:1000000 "$out"; } | tee "$out/table.md"
  exit 0
fi
if [ $quick = 2 ]; then
  { machine
    export BENCH_MAX_SECS=5
    cargo bench -q --bench compare -- 2000000 paced:1000000 "$out"
    cargo bench -q --bench compare -- 400000 paced:200000 "$out"
    BENCH_VARIANTS=staged,direct,raft-engine,okaywal,fs-write,fs-write-b2b,mmap-file,mmap-file-b2b cargo bench -q --bench compare -- 3000 paced:1000 "$out"
    cargo bench -q --bench compare -- 2000000 fast "$out"; } | tee "$out/table.md"
  plot
  exit 0
fi

{
  echo "# Benchmarks $(date -u +%Y-%m-%dT%H:%MZ)"; machine
  cargo bench -q --bench compare -- 20000000 fast "$out"
  cargo bench -q --bench compare -- 2000000 paced:100000 "$out"
  cargo bench -q --bench compare -- 20000000 paced:1000000 "$out"
  cargo bench -q --bench compare -- 4000000 paced:200000 "$out"
  BENCH_VARIANTS=staged,direct,raft-engine,okaywal,fs-write,fs-write-b2b,mmap-file,mmap-file-b2b cargo bench -q --bench compare -- 5000 paced:1000 "$out"
  cargo bench -q --bench append -- 256 5
  cargo bench -q --bench maintainer -- all 4
  cargo bench -q --bench writer_latency -- 2000000 1000000
  cargo bench -q --bench open -- full 3
  scripts/bench-tail.sh
  scripts/bench-sustained.sh 60
  echo; echo "replication: writer p99.9 with one follower against alone, and the replication lag (1 M/s)"
  scripts/bench-replication.sh 3 3000000 1000000
  echo; echo "the C ABI: wal_append and claims, from Rust and from C, against Recorder::append"
  scripts/bench-ffi.sh 5
  echo; echo "peak RSS of walctl record (1 MiB segments): must not grow with the segment count"
  echo "| segments | records | peak RSS KiB |"; echo "|---:|---:|---:|"
  for segs in 100 1000; do
    recs=$((segs * 13000))
    d=$(mktemp -d -p "$BENCH_DIR")
    rss=$(python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' \
      target/release/walctl record "$d" --records "$recs" --segment-size 1048576 --max-segments 4 --max-compressed 8)
    echo "| $segs | $recs | $rss |"
    rm -rf "$d"
  done
} | tee "$out/table.md"
scripts/bench-metrics.sh 1000000 1000000 3 | tee -a "$out/table.md"
plot
