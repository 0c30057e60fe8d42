#!/usr/bin/env bash
# Writer latency through the Recorder, paced, with coordinated-omission correction: no timer
# sync vs the default timer sync of completed pages vs sync() every 1000 appends.
# Usage: scripts/bench-writer.sh [records] [rate/s]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench writer_latency -- "${1:-2000000}" "${2:-1000000}"
