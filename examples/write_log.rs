//! Writes a log of the synthetic trading-event stream with `SegmentWriter` alone (no
//! maintainer): `cargo run --release --example write_log -- DIR [RECORDS] [SEGMENT_BYTES]`.
use std::path::PathBuf;

use wal_recorder::event;
use wal_recorder::segment::{AppendError, SegmentWriter};

fn main() -> Result<(), wal_recorder::Error> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: write_log DIR [RECORDS] [SEGMENT_BYTES]"),
    );
    let records: u64 = args
        .next()
        .map_or(1_000_000, |s| s.parse().expect("RECORDS"));
    let seg: u64 = args
        .next()
        .map_or(16 << 20, |s| s.parse().expect("SEGMENT_BYTES"));
    std::fs::create_dir_all(&dir).map_err(|e| wal_recorder::Error::io("mkdir", &dir, e))?;
    let mut index = 0;
    let mut w = SegmentWriter::create(&dir, index, seg, 1, 0)?;
    let mut seq = 1;
    while seq <= records {
        match w.append_with(event::EVENT_LEN, |b| event::fill(seq, b)) {
            Ok(_) => seq += 1,
            Err(AppendError::Full) => {
                w.seal();
                w.sync()?;
                index += 1;
                w = SegmentWriter::create(&dir, index, seg, w.next_seq(), w.last_crc())?;
            }
            Err(e) => panic!("append: {e:?}"),
        }
    }
    w.seal();
    w.sync()?;
    println!(
        "wrote {records} records in {} segments to {}",
        index + 1,
        dir.display()
    );
    Ok(())
}
