#!/usr/bin/env bash
# What the C ABI costs an append: Rust's Recorder::append against wal_append and
# wal_try_claim + wal_commit, from Rust and from a C program, alternated rounds in one run
# (bench/ffi_append.rs, bench/ffi_append.c). Usage: scripts/bench-ffi.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p wal-recorder-ffi
mkdir -p target/bench-ffi
cc -std=c11 -O2 -I ffi/include bench/ffi_append.c target/release/libwal_recorder_ffi.a \
    -lpthread -ldl -lm -o target/bench-ffi/ffi_append
WAL_FFI_BENCH_C="$(pwd)/target/bench-ffi/ffi_append" \
    cargo bench -q -p wal-recorder-ffi --bench ffi_append -- "${1:-3}"
