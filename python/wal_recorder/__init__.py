"""Read, tail and write wal-recorder logs from Python.

    import wal_recorder
    for seq, log_time_ns, payload in wal_recorder.read("/var/log/engine", from_seq=1):
        ...
    events = wal_recorder.read_events("/var/log/engine")   # a NumPy structured array

Errors raise ``wal_recorder.WalError`` with the library's message (it names the file).
"""

from ._native import Reader, Recorder, Tailer, WalError, read, read_fixed

__all__ = [
    "Reader",
    "Recorder",
    "Tailer",
    "WalError",
    "read",
    "read_fixed",
    "read_events",
    "TRADE_EVENT_DTYPE",
]

# The synthetic trading event of docs/EVENTS.md: 64 bytes, little-endian.
_TRADE_EVENT_FIELDS = [
    ("seq", "<u8"),
    ("ts_ns", "<u8"),
    ("order_id", "<u8"),
    ("instrument", "<u4"),
    ("side", "u1"),
    ("kind", "u1"),
    ("_zero0", "<u2"),
    ("price", "<u8"),
    ("qty", "<u4"),
    ("_zero1", "<u4"),
    ("trader", "<u8"),
    ("_zero2", "<u8"),
]


def __getattr__(name):
    # NumPy is optional: the dtype is built on first use.
    if name == "TRADE_EVENT_DTYPE":
        import numpy as np

        return np.dtype(_TRADE_EVENT_FIELDS)
    raise AttributeError(name)


def read_events(dir, from_seq=None, limit=None):
    """The trading events of a log (``walctl record``'s stream) as a NumPy structured array
    with the fields of docs/EVENTS.md. The records' first 64 bytes are gathered into one
    buffer by the library and the array is a view of it (no copy per record)."""
    import numpy as np

    dtype = np.dtype(_TRADE_EVENT_FIELDS)
    buf = read_fixed(dir, dtype.itemsize, from_seq=from_seq, limit=limit)
    return np.frombuffer(buf, dtype=dtype)
