//! Every corruption of contract 3 is detected, reported by `walctl verify` with exit code 1
//! and a message naming the file and the byte offset; a torn tail is a warning, not an error.

mod common;

use std::path::Path;

use common::{flip_bit, walctl, write_log};
use wal_recorder::logdir::verify;
use wal_recorder::segment::format::{
    record_crc, Framing, FIRST_SEQ_OFFSET, HEADER_LEN, REC_CRC_OFFSET, VERSION_OFFSET,
};
use wal_recorder::segment::names::segment_path;

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}

const REC: usize = 64;
const SEG: u64 = 64 * 1024;

/// Offset of the frame header of the `i`-th record (0-based) of a segment of 64-byte records.
fn rec_off(i: usize) -> u64 {
    (HEADER_LEN + i * record_size(REC)) as u64
}

/// Runs `walctl verify --json` and returns (exit code, stdout, stderr).
fn walctl_verify(dir: &Path) -> (i32, serde_json::Value, String) {
    let out = walctl()
        .arg("verify")
        .arg(dir)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = walctl().arg("verify").arg(dir).output().unwrap();
    (
        out.status.code().unwrap(),
        v,
        String::from_utf8_lossy(&text.stderr).into_owned(),
    )
}

fn assert_corrupt(dir: &Path, file: &Path, offset: u64, what: &str) {
    let (code, json, stderr) = walctl_verify(dir);
    assert_eq!(code, 1, "{what}: exit code; stderr: {stderr}");
    assert_eq!(json["ok"], false, "{what}");
    let err = json["errors"][0].as_str().unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{what}: {err} does not name {name}");
    assert!(
        err.contains(&format!("offset {offset}:")),
        "{what}: {err} does not give offset {offset}"
    );
    assert!(stderr.contains(name), "{what}: text output {stderr}");
}

#[test]
fn intact_log_verifies_with_exit_zero_and_contract_keys() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    let (code, json, _) = walctl_verify(dir.path());
    assert_eq!(code, 0);
    for key in [
        "ok",
        "segments",
        "hot",
        "cold",
        "records",
        "first_seq",
        "last_seq",
        "errors",
    ] {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(json["ok"], true);
    assert_eq!(json["records"], 5000);
    assert_eq!(json["segments"], paths.len());
    assert_eq!(json["hot"], paths.len());
    assert_eq!(json["cold"], 0);
    assert_eq!(json["first_seq"], 1);
    assert_eq!(json["last_seq"], 5000);
}

#[test]
fn flipped_bit_in_a_payload_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    flip_bit(&paths[1], rec_off(3) + 40);
    assert_corrupt(dir.path(), &paths[1], rec_off(3), "flipped payload bit");
}

#[test]
fn flipped_bit_in_the_last_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, false);
    let last = paths.last().unwrap();
    flip_bit(last, rec_off(2) + 30);
    assert_corrupt(
        dir.path(),
        last,
        rec_off(2),
        "flipped bit in the active segment",
    );
}

#[test]
fn removed_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    std::fs::remove_file(&paths[2]).unwrap();
    assert_corrupt(dir.path(), &paths[3], 0, "removed segment");
}

#[test]
fn swapped_segments_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    let tmp = dir.path().join("swap");
    std::fs::rename(&paths[1], &tmp).unwrap();
    std::fs::rename(&paths[2], &paths[1]).unwrap();
    std::fs::rename(&tmp, &paths[2]).unwrap();
    // The file now named 1 carries index 2 in its header.
    assert_corrupt(dir.path(), &paths[1], 0, "swapped segments");
}

#[test]
fn swapped_segments_with_rewritten_headers_break_the_chain() {
    // Even a forger who fixes the headers' index fields cannot make the chain agree.
    use wal_recorder::segment::format::SegmentHeader;
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    let mut a = std::fs::read(&paths[1]).unwrap();
    let mut b = std::fs::read(&paths[2]).unwrap();
    let mut ha = SegmentHeader::decode(&a[..HEADER_LEN]).unwrap();
    let mut hb = SegmentHeader::decode(&b[..HEADER_LEN]).unwrap();
    std::mem::swap(&mut ha.index, &mut hb.index);
    a[..HEADER_LEN].copy_from_slice(&ha.encode());
    b[..HEADER_LEN].copy_from_slice(&hb.encode());
    std::fs::write(&paths[1], b).unwrap();
    std::fs::write(&paths[2], a).unwrap();
    assert_corrupt(dir.path(), &paths[1], 0, "swapped and re-indexed segments");
}

#[test]
fn altered_record_with_recomputed_crc_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    let mut bytes = std::fs::read(&paths[1]).unwrap();
    // Alter record 5's payload and recompute its own checksum from the previous record's:
    // the record verifies, but record 6, chained over the old checksum, does not.
    let at = rec_off(5) as usize;
    let prev_crc = u32::from_le_bytes(
        bytes[rec_off(4) as usize + REC_CRC_OFFSET..][..4]
            .try_into()
            .unwrap(),
    );
    let seq = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at + 16] ^= 0xff;
    let crc = record_crc(prev_crc, seq, None, &bytes[at + 16..at + 16 + REC]);
    bytes[at + REC_CRC_OFFSET..at + REC_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&paths[1], bytes).unwrap();
    assert_corrupt(
        dir.path(),
        &paths[1],
        rec_off(6),
        "altered record, crc recomputed",
    );
}

#[test]
fn torn_tail_is_a_warning_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, false);
    let last = paths.last().unwrap();
    let full = std::fs::read(last).unwrap();
    let records_in_last = (0..)
        .take_while(|&i| {
            let o = rec_off(i) as usize;
            full[o..o + 8] != [0u8; 8]
        })
        .count();
    assert!(records_in_last > 3);
    // Tear the last record: keep its frame header, zero half of its payload.
    let torn = rec_off(records_in_last - 1) as usize;
    let mut bytes = full.clone();
    bytes[torn + 16 + 32..torn + 16 + 64].fill(0);
    std::fs::write(last, &bytes).unwrap();
    let (code, json, stderr) = walctl_verify(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["last_seq"], 4999);
    let warn = json["warnings"][0].as_str().unwrap();
    assert!(warn.contains("torn tail"), "{warn}");
    assert!(warn.contains(&format!("offset {torn}:")), "{warn}");
}

#[test]
fn half_written_frame_header_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 300, REC, SEG, false);
    let last = paths.last().unwrap();
    let r = verify(dir.path()).unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    // Where record 301 would go: a length written, the sequence not yet.
    let next = rec_off(300) as usize;
    bytes[next + 8] = 64;
    std::fs::write(last, &bytes).unwrap();
    let torn = verify(dir.path()).unwrap();
    assert!(torn.ok);
    assert_eq!(torn.last_seq, r.last_seq);
    assert!(
        torn.warnings[0].contains("torn tail"),
        "{:?}",
        torn.warnings
    );
}

#[test]
fn truncated_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 5000, REC, SEG, true);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[1])
        .unwrap();
    f.set_len(rec_off(10) + 20).unwrap();
    assert_corrupt(
        dir.path(),
        &paths[1],
        rec_off(10),
        "truncated sealed segment",
    );
}

#[test]
fn foreign_file_with_a_segment_name_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = segment_path(dir.path(), 0);
    std::fs::write(
        &p,
        b"this is not a wal segment at all, but long enough to hold a header!",
    )
    .unwrap();
    assert_corrupt(dir.path(), &p, 0, "foreign file");
    let (_, json, _) = walctl_verify(dir.path());
    assert!(json["errors"][0].as_str().unwrap().contains("bad magic"));
}

#[test]
fn empty_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = segment_path(dir.path(), 0);
    std::fs::write(&p, b"").unwrap();
    // Given on its own, an empty segment file is an error naming it.
    assert_corrupt(&p, &p, 0, "empty file");
    // In a directory, an empty file in the middle of the log is corruption too...
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, true);
    std::fs::write(&paths[1], b"").unwrap();
    assert_corrupt(dir.path(), &paths[1], 0, "empty file in the middle");
    // ...while at the end it is a segment a crash left right after its creation.
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, true);
    let tail = segment_path(dir.path(), paths.len() as u64);
    std::fs::write(&tail, b"").unwrap();
    let (code, json, _) = walctl_verify(dir.path());
    assert_eq!(code, 0);
    assert_eq!(json["last_seq"], 3000);
    assert!(json["warnings"][0].as_str().unwrap().contains("never used"));
}

#[test]
fn truncated_header_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 10, REC, SEG, true);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&paths[0])
        .unwrap();
    f.set_len(30).unwrap();
    assert_corrupt(dir.path(), &paths[0], 0, "truncated header");
    let (_, json, _) = walctl_verify(dir.path());
    assert!(json["errors"][0]
        .as_str()
        .unwrap()
        .contains("inside the segment header"));
}

#[test]
fn wrong_version_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 10, REC, SEG, true);
    let mut b = std::fs::read(&paths[0]).unwrap();
    b[VERSION_OFFSET] = 9;
    std::fs::write(&paths[0], b).unwrap();
    assert_corrupt(dir.path(), &paths[0], 0, "wrong version");
    let (_, json, _) = walctl_verify(dir.path());
    assert!(json["errors"][0]
        .as_str()
        .unwrap()
        .contains("unsupported format version 9"));
}

#[test]
fn altered_header_field_fails_the_header_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 10, REC, SEG, true);
    flip_bit(&paths[0], FIRST_SEQ_OFFSET as u64);
    assert_corrupt(dir.path(), &paths[0], 0, "altered header");
}

#[test]
fn foreign_files_beside_the_log_are_ignored_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 100, REC, SEG, true);
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"operator notes").unwrap();
    let (code, json, _) = walctl_verify(dir.path());
    assert_eq!(code, 0);
    assert!(json["warnings"][0].as_str().unwrap().contains("notes.txt"));
    assert_eq!(std::fs::read(&notes).unwrap(), b"operator notes");
}

#[test]
fn walctl_usage_errors_exit_two_and_missing_dir_exits_one() {
    let out = walctl().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = walctl().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = walctl()
        .args(["verify", "/nonexistent/log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/log"));
    let help = walctl().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for cmd in ["record", "verify", "ls", "cat", "stats"] {
        assert!(help.contains(cmd), "--help lacks {cmd}");
    }
}

#[test]
fn walctl_cat_prints_the_requested_range_decoded() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3000, REC, SEG, true);
    let out = walctl()
        .arg("cat")
        .arg(dir.path())
        .args(["--from", "1000", "--to", "1004"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let seqs: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(seqs, ["1000", "1001", "1002", "1003", "1004"]);
    assert!(text
        .lines()
        .all(|l| l.contains(" 64 ") && l.contains("order=")));
    let out = walctl()
        .arg("cat")
        .arg(dir.path())
        .args(["--from", "7", "--to", "7", "--hex"])
        .output()
        .unwrap();
    let ev = wal_recorder::event::TradeEvent::for_seq(7).encode();
    let hex: String = ev.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("7 64 {hex}")
    );
}

#[test]
fn walctl_ls_and_stats_describe_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_log(dir.path(), 3000, REC, SEG, false);
    let out = walctl().arg("ls").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), paths.len() + 1);
    assert!(text.lines().nth(1).unwrap().contains("sealed"));
    assert!(text.lines().last().unwrap().contains("open"));
    let out = walctl()
        .arg("stats")
        .arg(dir.path())
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hot_segments"], paths.len());
    assert_eq!(v["records"], 3000);
    assert_eq!(v["last_seq"], 3000);
}

/// Nothing unused is ever frozen: a cold segment that decodes to a zero header (a valid LZ4
/// frame of zeros) is corruption, not a "prepared segment never used", and the recorder
/// refuses to append after it (it used to, leaving a directory nothing could read).
#[test]
fn a_cold_segment_of_zeros_is_corruption_and_the_recorder_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let cold = dir.path().join(format!("{:020}.wal.lz4", 0));
    std::fs::write(
        &cold,
        wal_recorder::codec::lz4::compress_frame(&vec![0u8; SEG as usize], 0).unwrap(),
    )
    .unwrap();
    assert_corrupt(dir.path(), &cold, 0, "a cold frame of zeros");
    let staging = common::staging_root();
    let mut cfg = wal_recorder::config::Config::new(dir.path());
    cfg.staging_dir = staging.path().to_path_buf();
    let err = wal_recorder::recorder::Recorder::open(dir.path(), cfg)
        .err()
        .expect("the recorder must refuse the directory");
    assert!(err.to_string().contains(".wal.lz4"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing appended"
    );
}
