//! Issue 25: the continuous drain (group commit) and `Recorder::wait_durable`. A drain starts
//! as soon as the previous one completed and new records exist, not at the next tick of
//! `sync_interval`; `wait_durable` waits for the maintainer's own pace and never asks for an
//! extra drain. The timings here are the configuration's (a 10 s interval), not the
//! machine's: nothing asserts a speed.

use std::time::Duration;

use wal_recorder::config::Config;
use wal_recorder::recorder::Recorder;
use wal_recorder::Error;

const INTERVAL: Duration = wal_recorder::constants::MAX_SYNC_INTERVAL; // 10 s

fn config(dir: &std::path::Path, continuous: bool) -> Config {
    let mut c = Config::new(dir);
    c.segment_size = 1 << 20;
    c.sync_interval = INTERVAL;
    c.continuous_drain = continuous;
    c.scrub_rate = None;
    c
}

#[test]
fn a_continuous_drain_makes_each_batch_durable_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), true)).unwrap();
    for batch in 0..20u64 {
        let mut last = 0;
        for i in 0..(1 + batch * 37) {
            last = rec.append(&i.to_le_bytes()).unwrap();
        }
        // Far less than the 10 s interval: only a drain started by the appends themselves
        // (or by the previous drain's completion) can get there.
        rec.wait_durable(last, INTERVAL / 2).unwrap();
        assert!(rec.durable_seq() >= last);
    }
    rec.close().unwrap();
}

#[test]
fn wait_durable_asks_for_no_drain_and_times_out_where_sync_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), false)).unwrap();
    rec.append(b"first").unwrap();
    rec.sync().unwrap(); // a drain now: the next timed one is 10 s away
    let seq = rec.append(b"second").unwrap();
    match rec.wait_durable(seq, Duration::from_millis(300)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a timed drain 10 s away made it durable: {other:?}"),
    }
    assert!(rec.durable_seq() < seq);
    rec.sync().unwrap(); // asks for the drain
    rec.wait_durable(seq, Duration::ZERO).unwrap(); // already durable: returns at once
    rec.close().unwrap();
}

#[test]
fn wait_durable_refuses_a_seq_never_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::open(dir.path(), config(dir.path(), true)).unwrap();
    let last = rec.append(b"only").unwrap();
    for seq in [0, last + 1] {
        match rec.wait_durable(seq, Duration::from_secs(1)) {
            Err(Error::SeqNotFound {
                seq: s, last: l, ..
            }) => {
                assert_eq!((s, l), (seq, Some(last)));
            }
            other => panic!("seq {seq}: {other:?}"),
        }
    }
    rec.close().unwrap();
}
