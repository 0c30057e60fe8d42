#!/usr/bin/env bash
# The continuous drain's lag-versus-CPU curve: the timed drain and four --drain-gap values of
# one walctl build, alternated in rounds (default 3), paced at RATE appends/s (default 1 M/s)
# for RECORDS records (default 3 M). Prints lag p50/p99, the maintainer's CPU share and the
# writer's p99.9 of each run.
set -euo pipefail
bin=${WALCTL:-target/release/walctl}
rate=${RATE:-1000000} records=${RECORDS:-3000000} rounds=${1:-3}
for round in $(seq "$rounds"); do
    for v in timed 0us 200us 500us 1ms; do
        d=$(mktemp -d)
        case $v in
            timed) args=(--drain timed) ;;
            *) args=(--drain-gap "$v") ;;
        esac
        "$bin" record "$d/log" --records "$records" --rate "$rate" "${args[@]}" --json 2>/dev/null >"$d/r.json"
        python3 - "$v" "$round" "$d/r.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[3]))
lat, lag = j["latency_ns"], j["durability_lag_ns"]
cpu = j["maintainer"].get("cpu_ns", 0) / 1e9 / j["seconds"] * 100
print(f"{sys.argv[1]:>6} round {sys.argv[2]}: lag p50 {lag['p50'] / 1e6:.2f} ms p99 "
      f"{lag['p99'] / 1e6:.2f} ms, maintainer cpu {cpu:.0f} %, writer p99.9 {lat['p999'] / 1e3:.0f} us")
PY
        rm -rf "$d"
    done
done
