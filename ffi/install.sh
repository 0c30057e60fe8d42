#!/usr/bin/env bash
# Builds the C library and installs it for C and C++ projects under PREFIX (default
# /usr/local): PREFIX/include/wal_recorder.h and .hpp, PREFIX/lib/libwal_recorder_ffi.a and
# .so, and PREFIX/lib/pkgconfig/wal_recorder.pc, so that
#   cc app.c $(pkg-config --cflags --libs wal_recorder)
# or CMake's pkg_check_modules(WAL REQUIRED IMPORTED_TARGET wal_recorder) finds it. The .pc
# links the static library (an engine has no shared-library lookup at start, and nothing to
# install beside its binary); for the shared one: -L PREFIX/lib -lwal_recorder_ffi.
# Usage: ffi/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$(realpath -m "${1:-/usr/local}")"
cargo build -q --release -p wal-recorder-ffi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' ffi/Cargo.toml | head -1)
install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 ffi/include/wal_recorder.h ffi/include/wal_recorder.hpp "$prefix/include/"
install -m 644 target/release/libwal_recorder_ffi.a "$prefix/lib/"
install -m 755 target/release/libwal_recorder_ffi.so "$prefix/lib/"
cat > "$prefix/lib/pkgconfig/wal_recorder.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: wal_recorder
Description: wal-recorder, a write-ahead log for Linux low-latency systems (C API; C++17 header wal_recorder.hpp)
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/libwal_recorder_ffi.a -lpthread -ldl -lm
PC
echo "installed wal_recorder $version under $prefix (pkg-config: $prefix/lib/pkgconfig)"
