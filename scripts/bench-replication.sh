#!/usr/bin/env bash
# What one follower costs the leader's writer, and how far behind it is: `walctl record` at a
# paced rate alone, then serving one `walctl follow` on loopback (plain TCP), alternated in
# rounds in one run. Per run: writer p99.9 and page faults, the durability lag, and the
# replication lag (append -> durable on the follower, as the writer sees replicated_seq).
# Usage: scripts/bench-replication.sh [rounds] [records] [rate]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; records=${2:-3000000}; rate=${3:-1000000}
cargo build -q --release --features replication --bin walctl
w=target/release/walctl
tmp=$(mktemp -d); trap 'pkill -f "walctl follow $tmp" || true; rm -rf "$tmp"' EXIT
common=(--records "$records" --rate "$rate" --segment-size 64M --max-segments 4 --max-compressed 4 --json)
port=$((20000 + RANDOM % 20000))
summary() { python3 -c '
import json,sys
v=json.load(sys.stdin); r=v.get("replication_lag_ns") or {}
print("p99.9 %6.1f us  faults %d  durable lag p50/p99 %5.0f/%5.0f us  replicated lag p50/p99 %s/%s us  replicated_seq %s of %s" % (
  v["latency_ns"]["p999"]/1e3, v["writer"]["page_faults"], v["durability_lag_ns"]["p50"]/1e3, v["durability_lag_ns"]["p99"]/1e3,
  "%.0f" % (r["p50"]/1e3) if r else "-", "%.0f" % (r["p99"]/1e3) if r else "-", v.get("replicated_seq","-"), v["last_seq"]))
print(v["latency_ns"]["p999"], file=sys.stderr)'; }
declare -a base with
for r in $(seq 1 "$rounds"); do
    rm -rf "$tmp"/*
    b=$("$w" record "$tmp/alone" "${common[@]}" 2>/dev/null | summary 2>"$tmp/p")
    base+=("$(cat "$tmp/p")"); echo "round $r alone:        $b"
    rm -rf "$tmp"/*
    ( sleep 0.2; "$w" follow "$tmp/follower" --leader "127.0.0.1:$port" --insecure --segment-size 64M --max-segments 4 --max-compressed 4 --until "$records" 2>/dev/null ) &
    f=$("$w" record "$tmp/leader" --serve "127.0.0.1:$port" --insecure --await-followers 10 "${common[@]}" 2>/dev/null | summary 2>"$tmp/p")
    wait
    with+=("$(cat "$tmp/p")"); echo "round $r one follower: $f"
    port=$((port + 1))
done
python3 - "${base[*]}" "${with[*]}" <<'PY'
import sys, statistics as st
b=[float(x) for x in sys.argv[1].split()]; w=[float(x) for x in sys.argv[2].split()]
print("writer p99.9, median of rounds: alone %.1f us, one follower %.1f us: ratio %.2f (goal <= 1.10)" % (st.median(b)/1e3, st.median(w)/1e3, st.median(w)/st.median(b)))
PY
