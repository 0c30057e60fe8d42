"""The wal_recorder package: write, read, tail; logs written from Rust (walctl) and from C.

Needs WALCTL (the walctl binary) and WAL_C_EXAMPLE (examples/c/record_and_read.c built
against the C library): scripts/test-python.sh builds both and runs these tests.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import wal_recorder


def _need(var):
    path = os.environ.get(var)
    assert path and os.path.exists(path), (
        f"{var} must name the program (scripts/test-python.sh builds it)"
    )
    return path


@pytest.fixture
def staging():
    with tempfile.TemporaryDirectory(prefix="walrec-py-", dir="/dev/shm") as d:
        yield d


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "log")


def test_a_recorder_writes_what_read_gives_back_with_sequence_numbers_and_times(log, staging):
    with wal_recorder.Recorder(log, segment_size=1 << 16, staging_dir=staging) as r:
        for i in range(1, 2001):
            assert r.append_at(b"payload %d" % i, 1_000_000_000 + i) == i
        r.sync()
        assert r.durable_seq == 2000 == r.last_seq
    got = list(wal_recorder.read(log))
    assert got == [(i, 1_000_000_000 + i, b"payload %d" % i) for i in range(1, 2001)]
    # From a sequence number, and from a time (an int or RFC 3339) up to a time.
    assert next(iter(wal_recorder.read(log, from_seq=1500)))[0] == 1500
    window = list(wal_recorder.read(log, since=1_000_000_100, until=1_000_000_199))
    assert [s for s, _, _ in window] == list(range(100, 200))
    t = next(iter(wal_recorder.read(log, since="1970-01-01T00:00:01.000000300Z")))
    assert t[0] == 300


def test_a_log_without_time_gives_none(log, staging):
    with wal_recorder.Recorder(log, staging_dir=staging, record_time=False) as r:
        r.append(b"x")
    assert list(wal_recorder.read(log)) == [(1, None, b"x")]


def test_reads_a_log_written_by_walctl_and_decodes_its_events_with_numpy(tmp_path):
    walctl = _need("WALCTL")
    log = str(tmp_path / "from-rust")
    subprocess.run(
        [walctl, "record", log, "--records", "50000", "--segment-size", "1M",
         "--max-segments", "1"],
        check=True, stdout=subprocess.DEVNULL,
    )
    records = list(wal_recorder.read(log))
    assert [s for s, _, _ in records] == list(range(1, 50001))
    assert all(t is not None for _, t, _ in records[:10])
    events = wal_recorder.read_events(log)
    assert events.dtype == wal_recorder.TRADE_EVENT_DTYPE and events.dtype.itemsize == 64
    assert np.array_equal(events["seq"], np.arange(1, 50001, dtype=np.uint64))
    assert np.array_equal(events["order_id"], 1_000_000 + events["seq"] // 2)
    assert events["kind"].max() <= 3 and events["side"].max() <= 1
    part = wal_recorder.read_events(log, from_seq=40000, limit=5)
    assert list(part["seq"]) == [40000, 40001, 40002, 40003, 40004]


def test_reads_a_log_written_from_c(tmp_path, staging):
    prog = _need("WAL_C_EXAMPLE")
    log = str(tmp_path / "from-c")
    subprocess.run([prog, log, staging, "3000"], check=True, stdout=subprocess.DEVNULL)
    got = list(wal_recorder.read(log))
    assert [(s, p) for s, _, p in got] == [(i, b"event %d from C" % i) for i in range(1, 3001)]


def test_a_tailer_follows_a_live_log_and_a_named_one_resumes(log, staging):
    with wal_recorder.Recorder(log, segment_size=1 << 16, staging_dir=staging) as r:
        t = wal_recorder.Tailer(log, start="end", staging_dir=staging)
        assert t.poll() is None
        r.append(b"live")
        seq, _, payload = t.next(timeout=10.0)
        assert (seq, payload) == (1, b"live")
        assert t.next(timeout=0.01) is None
        for i in range(2, 101):
            r.append(b"r%d" % i)
        named = wal_recorder.Tailer(log, name="analyst", start="first", staging_dir=staging)
        assert [named.next(timeout=10.0)[0] for _ in range(50)] == list(range(1, 51))
        named.commit()
        again = wal_recorder.Tailer(log, name="analyst", staging_dir=staging)
        assert again.next(timeout=10.0)[0] == 51


def test_errors_are_exceptions_with_the_librarys_message(tmp_path, staging):
    missing = str(tmp_path / "missing")
    with pytest.raises(wal_recorder.WalError, match="missing"):
        wal_recorder.read(missing)
    with pytest.raises(wal_recorder.WalError, match="start"):
        wal_recorder.Tailer(str(tmp_path), start="middle")
    with pytest.raises(wal_recorder.WalError):
        wal_recorder.Recorder(str(tmp_path / "x"), segment_size=1, staging_dir=staging)
    r = wal_recorder.Recorder(str(tmp_path / "y"), staging_dir=staging)
    r.close()
    with pytest.raises(wal_recorder.WalError, match="closed"):
        r.append(b"late")


def test_the_python_example_summarizes_a_log_written_by_walctl(tmp_path, staging):
    walctl = _need("WALCTL")
    log = str(tmp_path / "events")
    subprocess.run(
        [walctl, "record", log, "--records", "20000", "--staging-dir", staging],
        check=True,
        capture_output=True,
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "python", "summarize.py"), log],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"{log}: 20000 events over " in out, out
    volumes = [line for line in out.splitlines() if line.startswith("  instrument ")]
    assert 1 <= len(volumes) <= 5, out
