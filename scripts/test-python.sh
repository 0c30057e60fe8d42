#!/usr/bin/env bash
# The Python package's tests: builds walctl and the C example (the logs the tests read from
# Rust and from C), installs ./python with pip (maturin builds it) into a fresh virtual
# environment under target/py-venv, and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --bin walctl
cargo build -q --release -p wal-recorder-ffi
mkdir -p target/c-example
cc -std=c11 -I ffi/include examples/c/record_and_read.c target/release/libwal_recorder_ffi.a \
    -lpthread -ldl -lm -o target/c-example/record_and_read
venv=target/py-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# maturin builds in the main target directory: the release dependencies the C library's
# build just compiled are reused instead of built again under python/target.
CARGO_TARGET_DIR="$(pwd)/target" "$venv/bin/python" -m pip install -q "./python[test]"
WALCTL="$(pwd)/target/release/walctl" WAL_C_EXAMPLE="$(pwd)/target/c-example/record_and_read" \
    "$venv/bin/python" -m pytest -q python/tests
