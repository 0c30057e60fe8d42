//! `MappedSegment::open` never maps a file whose length is not final: a segment still at its
//! preallocated capacity may be truncated by persist (or recovery) at any moment, and a
//! mapping of it would fault past the new end (SIGBUS) where the old code read the seal.

use std::path::Path;

use wal_recorder::config::{Config, WritePath};
use wal_recorder::logdir::MappedSegment;
use wal_recorder::recorder::Recorder;
use wal_recorder::segment::format::{SegmentHeader, HEADER_LEN};
use wal_recorder::segment::names::segment_path;

fn sealed_segment(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    let mut c = Config::new(dir);
    c.segment_size = 64 * 1024;
    c.max_segments = 100;
    c.scrub_rate = None;
    c.write_path = WritePath::Direct;
    let mut rec = Recorder::open(dir, c).unwrap();
    for i in 0..500u64 {
        rec.append(&i.to_le_bytes()).unwrap();
    }
    rec.close().unwrap();
    let path = segment_path(dir, 0);
    let bytes = std::fs::read(&path).unwrap();
    let header = SegmentHeader::decode(&bytes[..HEADER_LEN]).unwrap();
    assert!(
        (bytes.len() as u64) < header.capacity,
        "persist truncated it"
    );
    (path, bytes.len() as u64, header.capacity)
}

#[test]
fn a_segment_at_its_capacity_is_never_mapped_and_a_racing_truncate_cannot_fault_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (path, used, capacity) = sealed_segment(dir.path());
    let records = MappedSegment::open(&path)
        .unwrap()
        .unwrap()
        .records()
        .count();
    assert!(records > 0);
    // Back at its capacity, as before persist: not final, so not mapped.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(capacity).unwrap();
    assert!(MappedSegment::open(&path).unwrap().is_none());
    // A truncation racing every open: the reader either maps the final length or declines.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toggler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.set_len(if n % 2 == 0 { used } else { capacity }).unwrap();
                n += 1;
            }
            f.set_len(used).unwrap();
            n
        })
    };
    let mut mapped = 0;
    for _ in 0..20_000 {
        if let Some(seg) = MappedSegment::open(&path).unwrap() {
            assert_eq!(seg.records().filter(|r| r.is_ok()).count(), records);
            mapped += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let toggles = toggler.join().unwrap();
    assert!(
        toggles > 100 && mapped > 0,
        "{toggles} toggles, {mapped} mapped"
    );
}
