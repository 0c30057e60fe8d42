#!/usr/bin/env bash
# The README's test command: installs what the tests need and is missing on this machine,
# then runs the tests with the default features and with the histograms, the archive tier and
# replication (tests/replication*.rs: leader and followers on loopback), then the C ABI's.
#
#   lz4 (contract 2: `lz4 -d` restores a cold segment), e2fsprogs and xfsprogs (power cuts on
#   loop-mounted ext4 and xfs), mount/util-linux (tmpfs, loop and bind mounts), and moto's S3
#   server (the archive tests) in a virtual environment of its own under target/test-venv.
#
# Many tests need root (mounts, power cuts); they fail, naming what they need, without it.
# Extra arguments go to both `cargo test` runs (e.g. `scripts/test.sh --test tail`).
set -euo pipefail
cd "$(dirname "$0")/.."

need=""
command -v lz4 >/dev/null || need="$need lz4"
command -v mkfs.ext4 >/dev/null || need="$need e2fsprogs"
command -v mkfs.xfs >/dev/null || need="$need xfsprogs"
command -v losetup >/dev/null || need="$need mount util-linux"
command -v cc >/dev/null || need="$need gcc"
command -v c++ >/dev/null || need="$need g++"  # ffi/tests: the C++ example
command -v pkg-config >/dev/null || need="$need pkg-config"  # ffi/tests/pkg_config.rs
python3 -c 'import venv, ensurepip' 2>/dev/null || need="$need python3-venv"
if [ -n "$need" ]; then
    echo "installing:$need" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/test.sh: need root to install$need (or install them yourself)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

venv=target/test-venv
if ! "$venv/bin/python" -c 'import moto.server, boto3' 2>/dev/null; then
    echo "installing moto into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q 'moto[server]==5.2.5'
fi
# tests/archive.rs starts its S3 server with this interpreter.
WAL_TEST_PYTHON="$(pwd)/$venv/bin/python"
export WAL_TEST_PYTHON

cargo test "$@"
cargo test --features fs1-metrics,archive,replication "$@"
# The C ABI (ffi/): the checked-in header is fresh, a C program appends and reads back (with
# no arguments: `--test NAME` names a test of the main crate).
if [ $# -eq 0 ]; then
    cargo test -p wal-recorder-ffi
    # The Python package (pip install ./python in a fresh venv, pytest).
    bash scripts/test-python.sh
    # The README's and docs/' relative links, and that every command block not run by
    # scripts/docs-commands.py names the test that runs its commands. Running every block
    # (release builds with the archive and replication features: some 7 minutes more than
    # CI's 30-minute budget has) is `python3 scripts/docs-commands.py`.
    python3 scripts/docs-commands.py --list
fi
