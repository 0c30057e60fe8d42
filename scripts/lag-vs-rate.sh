#!/usr/bin/env bash
# Durability lag versus append rate, with the device's own floor: for each rate in RATES
# (default 1k to 4M appends/s of 64 B, then unpaced: the fastest the disk holds) one
# `walctl record --rate R` on a directory of the same file system, and, in every round, the
# latency of a 4 KiB pwrite + fdatasync there (what one drain cannot beat). Rounds alternate
# (default 3). Writes OUT/lag.csv and OUT/lag-vs-rate.svg (scripts/lag-vs-rate.py).
# Usage: scripts/lag-vs-rate.sh [rounds] [out-dir]   (WALCTL=path, RATES="1000 ...", BASE=dir)
set -euo pipefail
bin=${WALCTL:-target/release/walctl}
rounds=${1:-3}
out=${2:-results/$(date +%F)-lag-vs-rate}
rates=${RATES:-"1000 10000 100000 200000 500000 1000000 2000000 4000000 0"}
base=${BASE:-${TMPDIR:-/tmp}}
mkdir -p "$out"
csv="$out/lag.csv"
echo "round,rate,achieved_per_s,lag_p50_ns,lag_p99_ns,lag_max_ns,writer_p999_ns,maintainer_cpu_pct,stalls,fdatasync_p50_ns,fdatasync_p99_ns" >"$csv"
for round in $(seq "$rounds"); do
    d=$(mktemp -d -p "$base")
    # The floor: 4 KiB at successive offsets of a preallocated file, each write then fdatasync.
    floor=$(python3 - "$d/floor" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.posix_fallocate(fd, 0, 64 << 20)
os.fsync(fd)
buf, t = b"\x5a" * 4096, []
for i in range(1000):
    s = time.perf_counter_ns()
    os.pwrite(fd, buf, (i * 4096) % (64 << 20))
    os.fdatasync(fd)
    t.append(time.perf_counter_ns() - s)
t.sort()
print(t[len(t) // 2], t[len(t) * 99 // 100])
PY
)
    rm -f "$d/floor"
    for rate in $rates; do
        records=$((rate * 3))
        [ "$records" -lt 3000 ] && records=3000
        [ "$rate" -eq 0 ] && records=20000000
        "$bin" record "$d/log" --records "$records" --rate "$rate" --json 2>/dev/null >"$d/r.json" || true
        python3 - "$round" "$rate" "$d/r.json" "$floor" >>"$csv" <<'PY'
import json, sys
round_, rate, path, floor = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
j = json.load(open(path))
lag, lat = j["durability_lag_ns"], j["latency_ns"]
cpu = j["maintainer"].get("cpu_ns", 0) / 1e9 / j["seconds"] * 100
print(f"{round_},{rate},{j['records_per_sec']:.0f},{lag['p50']},{lag['p99']},{lag['max']},"
      f"{lat['p999']},{cpu:.1f},{j['writer']['stalls']},{floor[0]},{floor[1]}")
PY
        tail -1 "$csv"
        rm -rf "$d/log"
    done
    rm -rf "$d"
done
python3 "$(dirname "$0")/lag-vs-rate.py" "$csv" "$out/lag-vs-rate.svg"
