#!/usr/bin/env bash
# Append throughput of SegmentWriter vs a plain memcpy into prefaulted memory, same run,
# pinned to one core. Usage: scripts/bench-append.sh [segment MiB] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench append -- "${1:-256}" "${2:-5}"
