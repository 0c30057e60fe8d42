"""Summarize a log of the synthetic trading events (docs/EVENTS.md) with NumPy: how many
records, the time they span, and the traded volume per instrument.

    python examples/python/summarize.py DIR

Record a log to try it on: `walctl record DIR --records 100000`.
"""

import sys

import numpy as np

import wal_recorder


def main(dir):
    events = wal_recorder.read_events(dir)          # one structured array, no copy per record
    if len(events) == 0:
        print(f"{dir}: no records")
        return 0
    first, last = 0, 0
    for seq, log_time_ns, _ in wal_recorder.read(dir):  # the log's own times, when it has them
        if log_time_ns is not None:
            first = first or log_time_ns
            last = log_time_ns
    span = (last - first) / 1e9
    print(f"{dir}: {len(events)} events over {span:.3f} s of log time")
    instruments, where = np.unique(events["instrument"], return_inverse=True)
    volume = np.bincount(where, weights=events["qty"].astype(np.float64))
    for instrument, qty in sorted(zip(instruments, volume), key=lambda x: -x[1])[:5]:
        print(f"  instrument {instrument}: volume {qty:.0f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
