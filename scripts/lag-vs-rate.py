#!/usr/bin/env python3
"""Durability lag versus append rate from scripts/lag-vs-rate.sh's CSV: medians over rounds,
printed as a Markdown table and drawn as an SVG (log-log: x = appends/s achieved, y = lag),
with the device's write + fdatasync latency of the same run as the floor line. No plotting
library needed. Usage: scripts/lag-vs-rate.py lag.csv out.svg"""
import csv
import math
import statistics
import sys
from collections import defaultdict


def medians(path):
    rows = defaultdict(list)
    floor = []
    for r in csv.DictReader(open(path)):
        rows[int(r["rate"])].append(r)
        floor.append((int(r["fdatasync_p50_ns"]), int(r["fdatasync_p99_ns"])))
    out = []
    for rate, rs in rows.items():
        def m(k):
            return statistics.median(float(r[k]) for r in rs)
        out.append({"rate": rate, "achieved": m("achieved_per_s"), "p50": m("lag_p50_ns"),
                    "p99": m("lag_p99_ns"), "cpu": m("maintainer_cpu_pct"),
                    "wp999": m("writer_p999_ns"), "stalls": m("stalls"), "rounds": len(rs)})
    out.sort(key=lambda r: r["achieved"])
    f50 = statistics.median(f[0] for f in floor)
    f99 = statistics.median(f[1] for f in floor)
    return out, f50, f99


def svg(points, f50, f99, path):
    w, h, ml, mb, mt, mr = 720, 440, 70, 50, 30, 170
    xs = [p["achieved"] for p in points]
    ys = [v for p in points for v in (p["p50"], p["p99"])] + [f50, f99]
    x0, x1 = math.log10(min(xs) / 2), math.log10(max(xs) * 2)
    y0, y1 = math.log10(min(ys) / 2), math.log10(max(ys) * 2)

    def X(v):
        return ml + (math.log10(v) - x0) / (x1 - x0) * (w - ml - mr)

    def Y(v):
        return h - mb - (math.log10(v) - y0) / (y1 - y0) * (h - mb - mt)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{ml}" y="18">durability lag vs append rate (64 B records), medians</text>']
    for e in range(math.floor(x0), math.ceil(x1) + 1):
        if x0 <= e <= x1:
            s.append(f'<line x1="{X(10**e):.1f}" y1="{mt}" x2="{X(10**e):.1f}" y2="{h-mb}" stroke="#ddd"/>')
            s.append(f'<text x="{X(10**e):.1f}" y="{h-mb+16}" text-anchor="middle">1e{e}/s</text>')
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= e <= y1:
            label = f"{10**e / 1e6:g} ms"
            s.append(f'<line x1="{ml}" y1="{Y(10**e):.1f}" x2="{w-mr}" y2="{Y(10**e):.1f}" stroke="#ddd"/>')
            s.append(f'<text x="{ml-6}" y="{Y(10**e)+4:.1f}" text-anchor="end">{label}</text>')

    def line(key, colour, name, k):
        pts = " ".join(f"{X(p['achieved']):.1f},{Y(p[key]):.1f}" for p in points)
        s.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in points:
            s.append(f'<circle cx="{X(p["achieved"]):.1f}" cy="{Y(p[key]):.1f}" r="3" fill="{colour}"/>')
        s.append(f'<text x="{w-mr+8}" y="{mt+20+18*k}" fill="{colour}">{name}</text>')

    line("p50", "#1f77b4", "lag p50", 0)
    line("p99", "#d62728", "lag p99", 1)
    for v, name, k, dash in ((f50, "write+fdatasync p50", 2, "6,3"),
                             (f99, "write+fdatasync p99", 3, "2,3")):
        s.append(f'<line x1="{ml}" y1="{Y(v):.1f}" x2="{w-mr}" y2="{Y(v):.1f}" stroke="#2ca02c" '
                 f'stroke-dasharray="{dash}" stroke-width="2"/>')
        s.append(f'<text x="{w-mr+8}" y="{mt+20+18*k}" fill="#2ca02c">{name}</text>')
    s.append("</svg>")
    open(path, "w").write("\n".join(s))


def main(csv_path, svg_path):
    points, f50, f99 = medians(csv_path)
    print(f"device floor (4 KiB pwrite + fdatasync): p50 {f50/1e3:.0f} us, p99 {f99/1e3:.0f} us\n")
    print("| rate asked | achieved/s | lag p50 | lag p99 | lag p50 / floor p50 | maintainer CPU | writer p99.9 | stalls |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in points:
        asked = "unpaced" if p["rate"] == 0 else f"{p['rate']:,}"
        print(f"| {asked} | {p['achieved']:,.0f} | {p['p50']/1e3:.0f} us | {p['p99']/1e3:.0f} us | "
              f"{p['p50']/f50:.2f}x | {p['cpu']:.0f} % | {p['wp999']:.0f} ns | {p['stalls']:.0f} |")
    svg(points, f50, f99, svg_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
