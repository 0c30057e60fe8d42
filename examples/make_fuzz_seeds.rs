//! Writes the seed corpus of the reader fuzz target: small sealed, unsealed and torn
//! segments and their LZ4 frames. Run: `cargo run --example make_fuzz_seeds -- fuzz/seeds/reader`
use std::path::PathBuf;

use wal_recorder::codec::lz4::compress_frame;
use wal_recorder::segment::format::Framing;
use wal_recorder::segment::{ChainPoint, SegmentWriter};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("output directory"));
    std::fs::create_dir_all(&out).expect("mkdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Both formats: version 1 (no time) and version 2 (records with time).
    let shapes = [(0, true), (3, true), (20, false), (5, false)];
    let framings = [Framing::Plain, Framing::Timed];
    for (i, (framing, (records, seal))) in framings
        .iter()
        .flat_map(|f| shapes.iter().map(move |s| (*f, *s)))
        .enumerate()
    {
        let at = ChainPoint {
            next_seq: 1 + i as u64 * 100,
            crc: 7,
            max_time: 1_796_290_200_000_000_000,
        };
        let mut w =
            SegmentWriter::create_framed(tmp.path(), i as u64, 4096, framing, at).expect("segment");
        for r in 0..records {
            let mut p = vec![0u8; (r * 13) % 90];
            wal_recorder::event::fill(w.next_seq(), &mut p);
            w.append(&p).expect("append");
        }
        if seal {
            w.seal();
        }
        let used = w.used_len() as usize;
        let bytes = std::fs::read(w.path()).expect("read");
        // Sealed seeds are truncated to their used length, as persisted segments are.
        let seed = if seal {
            &bytes[..used]
        } else {
            &bytes[..used + 64]
        };
        std::fs::write(out.join(format!("seg{i}")), seed).expect("write");
        let frame = compress_frame(seed, 0).expect("lz4");
        std::fs::write(out.join(format!("seg{i}.lz4")), frame).expect("write");
    }
}
