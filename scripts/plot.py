#!/usr/bin/env python3
"""Draws the latency percentile distribution of every CSV that bench/compare.rs wrote into a
results directory, HdrHistogram style: x = percentile on a log scale of 1/(1-p), y = latency
in ns on a log scale, one line per variant. Usage: scripts/plot.py results/<date>"""
import csv
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "floor": "(d) floor: prefaulted memory",
    "staged": "(a) wal-recorder (default: Staged)",
    "staged-odirect": "(a1) Staged, O_DIRECT drain",
    "direct": "(a') wal-recorder, Direct",
    "direct-idle-sync": "(a'') Direct, sync_while_busy = false",
    "inline": "(b) inline fdatasync+close",
    "script": "(c) std::fs thread + lz4 CLI",
    "raft-engine": "(e) raft-engine, sync thread",
    "okaywal": "(f) okaywal, commit per record",
    "fs-write": "(g) write_all per record, sync_data thread",
    "mmap-file": "(h) mmap'd file, fdatasync thread",
}


def main(out):
    for path in sorted(glob.glob(os.path.join(out, "*.csv"))):
        rows = {}
        with open(path) as f:
            for r in csv.DictReader(f):
                p = float(r["percentile"])
                if p < 1.0:
                    rows.setdefault(r["variant"], []).append((1.0 / (1.0 - p), int(r["ns"])))
        fig, ax = plt.subplots(figsize=(8, 5))
        for variant, pts in rows.items():
            pts.sort()
            ax.plot([x for x, _ in pts], [max(y, 1) for _, y in pts], label=LABELS.get(variant, variant))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000, 100000, 1000000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("append latency (ns)")
        mode = os.path.basename(path)[:-4]
        ax.set_title(f"writer latency, {mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        for ext in ("png", "svg"):
            fig.savefig(os.path.join(out, f"{mode}.{ext}"))
        plt.close(fig)
        print(f"plotted {path}")


if __name__ == "__main__":
    main(sys.argv[1])
