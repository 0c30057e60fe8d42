#!/usr/bin/env bash
# Maintainer benchmarks (freeze throughput vs lz4 CLI and in-memory LZ4F; persist CPU
# io_uring vs blocking; idle CPU), baselines measured in the same run, the benchmark thread
# on core 0 and the maintainer on core 1. Usage: scripts/bench-maintainer.sh [freeze|persist|idle|all] [segments]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v lz4 >/dev/null || { echo "needs the lz4 command (apt-get install lz4)"; exit 1; }
cargo bench --bench maintainer -- "${1:-all}" "${2:-4}"
