#!/usr/bin/env bash
# Sustained load (issue 16): `walctl record` as fast as the writer goes for SECONDS (default
# 60), 64 MiB segments, max-segments 4, max-compressed 8, a disk budget of BUDGET bytes
# (default 2 GiB), while a sampler lists the log directory every 100 ms (hot and cold segment
# counts, bytes on disk) and the progress lines give health. Writes
# results/<date>-sustained/{samples.csv,table.md,sustained.png}.
#   scripts/bench-sustained.sh [SECONDS] [BUDGET]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
budget="${2:-2147483648}"
out="results/$(date -u +%Y-%m-%d)-sustained"
mkdir -p "$out"
export BENCH_DIR="${BENCH_DIR:-$PWD/target}"
cargo build --release --bin walctl -q
d=$(mktemp -d -p "$BENCH_DIR")
trap 'rm -rf "$d"' EXIT
target/release/walctl record "$d/log" --records 100000000000 --seconds "$secs" \
  --segment-size 67108864 --max-segments 4 --max-compressed 8 --max-disk-bytes "$budget" \
  --json --progress >"$out/record.json" 2>"$out/progress.txt" &
pid=$!
python3 - "$d/log" "$out" "$budget" "$pid" <<'PY'
import os, sys, time
log, out, budget, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows, t0 = [], time.time()
def alive():
    try:
        os.kill(pid, 0); return True
    except OSError: return False
while alive():
    hot = cold = size = 0
    try:
        for e in os.scandir(log):
            if not e.is_file(): continue
            try: n = e.stat().st_size
            except FileNotFoundError: continue
            size += n
            if e.name.endswith('.wal'): hot += 1
            elif e.name.endswith('.wal.lz4'): cold += 1
    except FileNotFoundError:
        pass
    rows.append((time.time() - t0, hot, cold, size))
    time.sleep(0.1)
with open(f"{out}/samples.csv", "w") as f:
    f.write("t_s,hot_files,cold_files,bytes\n")
    for r in rows: f.write("%.2f,%d,%d,%d\n" % r)
PY
wait "$pid" || true
python3 - "$out" "$budget" "$secs" <<'PY'
import csv, json, sys
out, budget, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
rec = json.load(open(f"{out}/record.json"))
health = [l.split()[-1] for l in open(f"{out}/progress.txt") if l.startswith("appended") and "health" in l]
hot = [int(r["hot_files"]) for r in rows]; size = [int(r["bytes"]) for r in rows]
over = sum(1 for s in size if s > budget)
with open(f"{out}/table.md", "w") as f:
    f.write(f"sustained load, {secs} s as fast as possible, 64 MiB segments, max-segments 4, max-compressed 8, budget {budget} bytes\n\n")
    f.write("| measure | value |\n|---|---:|\n")
    f.write(f"| records/s | {rec['records_per_sec']:.0f} |\n")
    f.write(f"| writer rollovers / stalls | {rec['writer']['rollovers']} / {rec['writer']['stalls']} |\n")
    f.write(f"| samples | {len(rows)} |\n")
    f.write(f"| hot segment files, max (all .wal: sealed, active, prepared) | {max(hot)} |\n")
    f.write(f"| bytes on disk, max | {max(size)} |\n")
    f.write(f"| samples over the budget | {over} |\n")
    f.write(f"| progress lines with health Degraded / all | {health.count('Degraded')} / {len(health)} |\n")
    f.write(f"| health at the end | {rec['health']} |\n")
    f.write(f"| error | {rec['error']} |\n")
print(open(f"{out}/table.md").read())
try:
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [float(r["t_s"]) for r in rows]
    fig, ax = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax[0].plot(t, hot, label="hot .wal files"); ax[0].plot(t, [int(r["cold_files"]) for r in rows], label="cold .wal.lz4 files")
    ax[0].axhline(4 + 2, ls=":", c="gray", label="max_segments + 2"); ax[0].legend(); ax[0].set_ylabel("files")
    ax[1].plot(t, [s / 2**20 for s in size], label="bytes on disk (MiB)"); ax[1].axhline(budget / 2**20, ls="--", c="red", label="budget")
    ax[1].legend(); ax[1].set_ylabel("MiB"); ax[1].set_xlabel("s")
    fig.tight_layout(); fig.savefig(f"{out}/sustained.png", dpi=100)
    print(f"plotted {out}/sustained.png")
except Exception as e:
    print("plotting failed:", e)
PY
