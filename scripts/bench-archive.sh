#!/usr/bin/env bash
# What the archive tier costs the writer: the writer-latency benchmark with 4 MiB segments
# (so that a run freezes and archives dozens of them), sync_while_busy = false, without and
# with a file:// archive, in one run; the first variant is the baseline of the ratios.
# Usage: scripts/bench-archive.sh [records] [rate/s]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SEGMENT_SIZE=$((4 << 20)) BENCH_VARIANTS=idle-only-sync,idle-only-sync-archive \
    cargo bench --features archive --bench writer_latency -- "${1:-4000000}" "${2:-1000000}"
