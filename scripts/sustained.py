#!/usr/bin/env python3
"""Sustained load (issue 16), driven by scripts/bench-sustained.sh.

Runs `walctl record` for SECONDS per row (64 MiB segments, max-segments 4, max-compressed 8,
a disk budget), sampling the log directory every 100 ms (hot and cold files, bytes on disk)
and timestamping each progress line (health). Rows: as fast as the writer goes with one
compression helper and with compression on the maintainer's loop, then paced rates. The
disk's own sustained write rate (dd, 2 GiB, fdatasync) is measured in the same run as the
baseline the rates are compared with.

usage: sustained.py WALCTL OUT_DIR WORK_DIR SECONDS BUDGET
"""
import json
import os
import subprocess
import sys
import threading
import time

walctl, out, work, secs, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
MAX_SEG = 4
ROWS = [
    ("fast, 1 helper", ["--compress-threads", "1"]),
    ("fast, on the loop", ["--compress-threads", "0"]),
    ("5 M/s, 1 helper", ["--rate", "5000000", "--compress-threads", "1"]),
    ("2 M/s, 1 helper", ["--rate", "2000000", "--compress-threads", "1"]),
]


def disk_rate():
    """MB/s of a 2 GiB dd with fdatasync into the work directory."""
    path = os.path.join(work, "dd.tmp")
    t = time.time()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=2048", "conv=fdatasync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mbs = 2048 * 1048576 / (time.time() - t) / 1e6
    os.remove(path)
    return mbs


def run(name, extra):
    log = os.path.join(work, "log")
    subprocess.run(["rm", "-rf", log], check=True)
    cmd = [walctl, "record", log, "--records", "100000000000", "--seconds", str(secs),
           "--segment-size", str(64 << 20), "--max-segments", str(MAX_SEG), "--max-compressed", "8",
           "--max-disk-bytes", str(budget), "--json", "--progress"] + extra
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    health = []  # (t, health)

    def progress():
        for line in p.stderr:
            w = line.split()
            if line.startswith("appended") and "health" in w:
                health.append((time.time() - t0, w[w.index("health") + 1]))

    reader = threading.Thread(target=progress)
    reader.start()
    samples = []
    while p.poll() is None:
        hot = cold = size = 0
        try:
            for e in os.scandir(log):
                if not e.is_file():
                    continue
                try:
                    n = e.stat().st_size
                except FileNotFoundError:
                    continue
                size += n
                if e.name.endswith(".wal"):
                    hot += 1
                elif e.name.endswith(".wal.lz4"):
                    cold += 1
        except FileNotFoundError:
            pass
        samples.append((time.time() - t0, hot, cold, size))
        time.sleep(0.1)
    rec = json.loads(p.stdout.read())
    reader.join()
    subprocess.run(["rm", "-rf", log], check=True)
    return {"name": name, "samples": samples, "health": health, "rec": rec}


def degraded_delay(r):
    """Seconds from the first sample whose hot backlog (hot files less the active and the
    prepared one) exceeds 2x max_segments to the first Degraded progress line after it;
    None if it never exceeds; inf if Degraded never follows."""
    first = next((t for t, hot, _, _ in r["samples"] if hot - 2 > 2 * MAX_SEG), None)
    if first is None:
        return None
    # A progress line printed up to 100 ms before the sample may already be Degraded.
    later = [t for t, h in r["health"] if h == "Degraded" and t >= first - 0.1]
    return (min(later) - first) if later else float("inf")


def main():
    os.makedirs(out, exist_ok=True)
    disk = disk_rate()
    results = [run(name, extra) for name, extra in ROWS]
    lines = [f"sustained load, {secs:.0f} s per row, 64 MiB segments, max-segments {MAX_SEG}, "
             f"max-compressed 8, budget {budget} bytes; disk baseline (dd 2 GiB + fdatasync, same run): "
             f"{disk:.0f} MB/s", "",
             "| row | records/s | MB/s appended / disk | rollovers / stalls | stall causes (no free buffer, preparing, retry, late) | sealed hot max | samples sealed hot > max+2 | Degraded after 2x (s) | bytes max / budget | samples over budget | acceleration (last, freezes) | durability lag p50 / p99 ms | health |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        rec, s = r["rec"], r["samples"]
        m = rec["maintainer"]
        c = m["stall_causes"]
        mb = rec["records_per_sec"] * (64 + 16) / 1e6  # payload plus the record header
        # .wal files less the active segment and the prepared next one: sealed hot segments
        hot = [max(h - 2, 0) for _, h, _, _ in s]
        size = [b for _, _, _, b in s]
        lag = rec.get("durability_lag_ns") or {}
        d = degraded_delay(r)
        d = "never 2x" if d is None else ("not reported" if d == float("inf") else f"{max(d, 0):.2f}")
        lines.append(
            f"| {r['name']} | {rec['records_per_sec']:.0f} | {mb / disk:.2f} | "
            f"{rec['writer']['rollovers']} / {rec['writer']['stalls']} | "
            f"{c['no_free_buffer']}, {c['preparing']}, {c['prepare_retry']}, {c['maintainer_late']} | "
            f"{max(hot)} | {sum(1 for h in hot if h > MAX_SEG + 2)} / {len(hot)} | {d} | "
            f"{max(size) / budget:.2f} | {sum(1 for b in size if b > budget)} | "
            f"{m['freeze_acceleration']}, {m['accelerated_freezes']} | "
            f"{lag.get('p50', 0) / 1e6:.1f} / {lag.get('p99', 0) / 1e6:.1f} | {rec['health']} |")
    table = "\n".join(lines) + "\n"
    open(os.path.join(out, "table.md"), "w").write(table)
    print(table)
    with open(os.path.join(out, "samples.csv"), "w") as f:
        f.write("row,t_s,hot_files,cold_files,bytes\n")
        for r in results:
            for t, h, c, b in r["samples"]:
                f.write(f"{r['name']},{t:.2f},{h},{c},{b}\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
        for r in results:
            t = [x[0] for x in r["samples"]]
            ax[0].plot(t, [x[1] for x in r["samples"]], label=f"hot .wal, {r['name']}")
            ax[1].plot(t, [x[3] / 2**20 for x in r["samples"]], label=r["name"])
        ax[0].axhline(MAX_SEG + 2, ls=":", c="gray", label="max_segments + 2")
        ax[0].axhline(2 * MAX_SEG + 2, ls="--", c="orange", label="2x max_segments (+2)")
        ax[0].set_ylabel("hot files")
        ax[0].legend(fontsize=7)
        ax[1].axhline(budget / 2**20, ls="--", c="red", label="budget")
        ax[1].set_ylabel("MiB on disk")
        ax[1].set_xlabel("s")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "sustained.png"), dpi=100)
        print(f"plotted {out}/sustained.png")
    except Exception as e:  # the table is the result; the plot is a convenience
        print("plotting failed:", e)


main()
