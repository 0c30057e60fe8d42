#!/usr/bin/env bash
# A/B of two walctl builds at a trading engine's pace: paced 1 M appends/s of 64 B (3 M
# records), alternating rounds (default 3), printing writer p99.9 and durability lag p50/p99
# of each run (compare them round by round). Build the baseline first, e.g.
#   git worktree add /tmp/base <commit> && (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target cargo build --release --bin walctl)
#   scripts/ab-walctl.sh /tmp/base-target/release/walctl target/release/walctl
# WALCTL_ARGS adds arguments to both, e.g. WALCTL_ARGS="--write-path direct"; RATE and
# RECORDS change the pace (default 1000000/s, 3000000 records).
set -euo pipefail
base=$1 head=$2 rounds=${3:-3}
read -r -a extra <<<"${WALCTL_ARGS:-}"
for round in $(seq "$rounds"); do
    for v in base head; do
        bin=$base; [ "$v" = head ] && bin=$head
        d=$(mktemp -d)
        "$bin" record "$d/log" --records "${RECORDS:-3000000}" --rate "${RATE:-1000000}" "${extra[@]}" --json 2>/dev/null >"$d/r.json"
        python3 - "$v" "$round" "$d/r.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[3]))
lat, lag = j["latency_ns"], j["durability_lag_ns"]
print(f"{sys.argv[1]} round {sys.argv[2]}: writer p99.9 {lat['p999'] / 1e3:.1f} us, "
      f"lag p50 {lag['p50'] / 1e6:.2f} ms p99 {lag['p99'] / 1e6:.2f} ms, "
      f"faults {j['writer'].get('page_faults')}, "
      f"maintainer cpu {j['maintainer'].get('cpu_ns', 0) / 1e9 / j['seconds'] * 100:.0f} %")
PY
        rm -rf "$d"
    done
done
