//! The states a power cut can leave, built byte by byte (docs/RECOVERY.md, "Power-loss
//! states"): each opens under the default `TruncateTail` rule, keeps every record before the
//! first break, and reports what it drops (in the open's result, in `walctl verify`'s
//! warnings) after moving it to `quarantine/`. `Strict` refuses them; corruption that lost
//! writes cannot explain, or that a later persisted segment proves was durable, is refused
//! by both.

mod common;

use std::path::{Path, PathBuf};

use common::{file_names, used_len, walctl, write_log};
use wal_recorder::config::{Config, RecoveryMode};
use wal_recorder::event;
use wal_recorder::logdir::{verify, TailDrop};
use wal_recorder::recorder::Recorder;
use wal_recorder::recovery::Action;
use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::names::hot_name;
use wal_recorder::segment::truncate_sealed;
use wal_recorder::Error;

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}

const SEG: u64 = 64 * 1024;
const REC: usize = 64;
/// Records per 64 KiB segment of 64-byte payloads (80-byte frames).
const PER_SEG: u64 = 817;
const PAGE: usize = 4096;

fn config(dir: &Path, mode: RecoveryMode) -> Config {
    let mut c = Config::new(dir);
    // These states are of the disk alone (a power cut empties tmpfs): no staging to replay.
    c.write_path = wal_recorder::config::WritePath::Direct;
    c.segment_size = SEG;
    c.max_segments = 100;
    c.max_compressed_segments = 100;
    c.recovery_mode = mode;
    c
}

/// A log of 4 segments: 0 and 1 persisted (truncated), 2 sealed at full size (its persist
/// was in flight), 3 the active one, unsealed.
fn mid_flight_log(dir: &Path) -> Vec<PathBuf> {
    let paths = write_log(dir, 3 * PER_SEG + 300, REC, SEG, false);
    assert_eq!(paths.len(), 4);
    for p in &paths[..2] {
        truncate_sealed(p, used_len(p)).unwrap();
    }
    paths
}

/// Zeroes `[from, to)` of a file: pages that never reached the disk.
fn lose(path: &Path, from: usize, to: usize) {
    let mut b = std::fs::read(path).unwrap();
    let to = to.min(b.len());
    b[from..to].fill(0);
    std::fs::write(path, b).unwrap();
}

/// Offset of record `i` (0-based) of a segment.
fn rec_off(i: u64) -> usize {
    HEADER_LEN + i as usize * record_size(REC)
}

/// Opens with the default rule, checks what was kept and reported, appends one record,
/// closes, and checks the directory verifies with no warning left.
fn opens_dropping(dir: &Path, kept: u64) -> TailDrop {
    let mut rec = Recorder::open(dir, config(dir, RecoveryMode::TruncateTail)).unwrap();
    assert_eq!(rec.last_seq(), kept, "{:?}", rec.recovered().actions);
    let dropped = rec.recovered().dropped.clone().expect("a drop is reported");
    assert_eq!(dropped.first_seq, kept + 1, "{dropped}");
    assert!(
        rec.recovered()
            .actions
            .iter()
            .any(|a| matches!(a, Action::Dropped { drop, .. } if drop.first_seq == kept + 1)),
        "{:?}",
        rec.recovered().actions
    );
    let seq = kept + 1;
    assert_eq!(rec.append_with(REC, |b| event::fill(seq, b)).unwrap(), seq);
    rec.close().unwrap();
    let r = verify(dir).unwrap();
    assert!(r.ok, "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.last_seq, Some(seq));
    dropped
}

/// `walctl verify` on the state as the cut left it: exit 0, the drop among its warnings.
fn verify_warns_of_drop(dir: &Path, first_lost: u64) {
    let out = walctl()
        .args(["verify", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains(&format!("from sequence number {first_lost} on")),
        "{warnings}"
    );
}

fn strict_refuses(dir: &Path, names: &Path) {
    let before: Vec<(String, Vec<u8>)> = file_names(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap_or_default()))
        .collect();
    let err = Recorder::open(dir, config(dir, RecoveryMode::Strict))
        .err()
        .expect("Strict refuses a break before the end");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let name = names.file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(name), "{err}");
    for (n, b) in before {
        assert_eq!(std::fs::read(dir.join(&n)).unwrap_or_default(), b, "{n}");
    }
}

fn quarantined(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("quarantine"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Segment 2's last pages (its last records and its seal) never reached the disk, while
/// segment 3's did (its header continues from records that are lost): the chain breaks at
/// segment 3's header.
#[test]
fn lost_end_of_a_segment_before_a_written_successor_opens_and_drops_the_successor() {
    let dir = tempfile::tempdir().unwrap();
    let paths = mid_flight_log(dir.path());
    lose(&paths[2], 12 * PAGE, SEG as usize);
    // Record 613 of segment 2 straddles the lost page: 613 records of it survive.
    let kept = 2 * PER_SEG + 613;
    verify_warns_of_drop(dir.path(), kept + 1);
    strict_refuses(dir.path(), &paths[2]);
    let d = opens_dropping(dir.path(), kept);
    assert_eq!(d.files, vec![paths[3].clone()]);
    assert_eq!(d.records, 300, "segment 3's records verify on their own");
    assert_eq!(d.last_seq, Some(3 * PER_SEG + 300));
    assert_eq!(quarantined(dir.path()), vec![hot_name(3)]);
}

/// Segment 2 lost only its seal's page, and its last record is complete: segment 3's header
/// continues the chain, so nothing is lost and nothing dropped.
#[test]
fn unsealed_segment_followed_by_one_continuing_the_chain_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let paths = mid_flight_log(dir.path());
    let seal_at = rec_off(PER_SEG);
    lose(&paths[2], seal_at, SEG as usize);
    let last = 3 * PER_SEG + 300;
    let out = walctl().arg("verify").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut rec =
        Recorder::open(dir.path(), config(dir.path(), RecoveryMode::TruncateTail)).unwrap();
    assert_eq!(rec.last_seq(), last);
    assert!(rec.recovered().dropped.is_none());
    rec.append_with(REC, |b| event::fill(last + 1, b)).unwrap();
    rec.close().unwrap();
    assert!(quarantined(dir.path()).is_empty());
    assert_eq!(verify(dir.path()).unwrap().last_seq, Some(last + 1));
}

/// A page in the middle of the last segment never reached the disk, but the pages after it
/// did, its seal included: a hole followed by a valid seal.
#[test]
fn hole_followed_by_a_valid_seal_opens_and_keeps_a_copy_of_what_follows_the_hole() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 2 * PER_SEG + 700, REC, SEG, true);
    truncate_sealed(&paths[0], used_len(&paths[0])).unwrap();
    truncate_sealed(&paths[1], used_len(&paths[1])).unwrap();
    let original = std::fs::read(&paths[2]).unwrap();
    lose(&paths[2], PAGE, 2 * PAGE);
    // Record 50 of segment 2 straddles the start of the hole.
    let kept = 2 * PER_SEG + 50;
    verify_warns_of_drop(dir.path(), kept + 1);
    strict_refuses(dir.path(), &paths[2]);
    let d = opens_dropping(dir.path(), kept);
    assert!(d.files.is_empty());
    assert!(d.bytes_after > 0, "{d}");
    // The copy in quarantine is the segment as the cut left it, everything after the hole.
    let copy = std::fs::read(dir.path().join("quarantine").join(hot_name(2))).unwrap();
    assert_eq!(copy[2 * PAGE..], original[2 * PAGE..]);
}

/// Segment 2's header page never reached the disk (a zero header), segment 3's did.
#[test]
fn lost_header_page_before_a_written_successor_drops_both() {
    let dir = tempfile::tempdir().unwrap();
    let paths = mid_flight_log(dir.path());
    lose(&paths[2], 0, PAGE);
    let kept = 2 * PER_SEG;
    verify_warns_of_drop(dir.path(), kept + 1);
    strict_refuses(dir.path(), &paths[2]);
    let d = opens_dropping(dir.path(), kept);
    assert_eq!(d.files, vec![paths[2].clone(), paths[3].clone()]);
    assert_eq!(quarantined(dir.path()), vec![hot_name(2), hot_name(3)]);
}

/// The active segment's header page never reached the disk but later pages did: it is not
/// an unused prepared segment (those are all zeros), so its data is kept in quarantine
/// rather than removed as empty.
#[test]
fn last_segment_with_a_lost_header_page_and_data_is_quarantined_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = mid_flight_log(dir.path());
    truncate_sealed(&paths[2], used_len(&paths[2])).unwrap();
    lose(&paths[3], 0, PAGE);
    let kept = 3 * PER_SEG;
    verify_warns_of_drop(dir.path(), kept + 1);
    let d = opens_dropping(dir.path(), kept);
    assert_eq!(d.files, vec![paths[3].clone()]);
    assert_eq!(quarantined(dir.path()), vec![hot_name(3)]);
}

/// The same hole as above, but segment 3 was persisted (truncated) after it: persist runs in
/// log order, so segment 2 had been durable, and the hole is damage, not a power cut. A full
/// scan at open refuses it under every rule; the default open walks sealed segments by their
/// summaries and does not read it (the scrub and `walctl verify` find it).
#[test]
fn hole_before_a_persisted_segment_is_corruption_under_every_open_rule() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3 * PER_SEG + 300, REC, SEG, true);
    for p in &paths {
        truncate_sealed(p, used_len(p)).unwrap();
    }
    lose(&paths[2], 12 * PAGE, 13 * PAGE);
    for mode in [RecoveryMode::TruncateTail, RecoveryMode::Strict] {
        let mut c = config(dir.path(), mode);
        c.full_scan_on_open = true;
        let err = Recorder::open(dir.path(), c).err().expect("refused");
        assert!(err.to_string().contains(&hot_name(2)), "{mode:?}: {err}");
    }
    let out = walctl().arg("verify").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("quarantine").exists());
}
