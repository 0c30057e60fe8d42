#!/usr/bin/env python3
"""Driven by scripts/budget-tmpfs.sh: per round, `walctl record` under a 48 MiB budget in a
96 MiB tmpfs, the log directory's allocated bytes sampled every 100 ms; writes samples.csv
and table.md into OUT_DIR and prints the table.

usage: budget-tmpfs.py WALCTL MOUNT OUT_DIR ROUNDS"""
import json
import os
import subprocess
import sys
import time

walctl, mnt, out, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BUDGET = 48 << 20
SEG = 4 << 20


def allocated(d):
    total = 0
    for name in os.listdir(d):
        try:
            total += os.stat(os.path.join(d, name)).st_blocks * 512
        except FileNotFoundError:
            pass  # deleted by retention between listdir and stat
    return total


rows, samples = [], []
for r in range(1, rounds + 1):
    log = os.path.join(mnt, "log")
    subprocess.run(["rm", "-rf", log], check=True)
    cmd = [walctl, "record", log, "--records", "20000000", "--segment-size", str(SEG),
           "--max-segments", "2", "--max-compressed", "1000", "--max-disk-bytes", str(BUDGET),
           "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    peak = 0
    while p.poll() is None:
        if os.path.isdir(log):
            b = allocated(log)
            peak = max(peak, b)
            samples.append((r, round(time.time() - t0, 3), b))
        time.sleep(0.1)
    stdout, stderr = p.communicate()
    j = json.loads(stdout)
    m = j["maintainer"]
    secs = j["seconds"]
    frozen_bytes = m["frozen"] * SEG
    # The log's bytes (frames and headers), as the freeze sees them: one segment per rollover.
    appended_bytes = j["writer"]["rollovers"] * SEG
    rows.append({
        "round": r, "exit": p.returncode, "error": j.get("error"), "records": j["records"],
        "records_per_sec": j["records_per_sec"], "seconds": secs,
        "writer_mb_s": appended_bytes / secs / 1e6, "freeze_mb_s": frozen_bytes / secs / 1e6,
        "frozen": m["frozen"], "freed": m["freed"], "enospc": m["enospc"],
        "stalls": j["writer"].get("stalls"), "stall_causes": m["stall_causes"],
        "peak": peak, "health": j["health"],
    })

with open(os.path.join(out, "samples.csv"), "w") as f:
    f.write("round,t_s,bytes\n")
    for s in samples:
        f.write(f"{s[0]},{s[1]},{s[2]}\n")
lines = ["| round | exit | records | records/s | log MB/s written ÷ frozen | frozen / freed | "
         "ENOSPC | budget stalls | max bytes ÷ budget (100 ms samples) | health |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
for x in rows:
    budget_stalls = x["stall_causes"].get("budget", 0) if isinstance(x["stall_causes"], dict) else "?"
    lines.append(f"| {x['round']} | {x['exit']} | {x['records']:,} | {x['records_per_sec'] / 1e6:.2f} M "
                 f"| {x['writer_mb_s']:.0f} ÷ {x['freeze_mb_s']:.0f} = {x['writer_mb_s'] / max(x['freeze_mb_s'], 1e-9):.2f} "
                 f"| {x['frozen']} / {x['freed']} | {x['enospc']} | {budget_stalls} "
                 f"| {x['peak'] / BUDGET:.3f} | {x['health']} |")
table = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
print(table)
for x in rows:
    if x["error"]:
        print(f"round {x['round']}: error {x['error']}")
