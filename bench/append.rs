//! Append throughput of `SegmentWriter` against the floor: a plain `memcpy` of the same
//! payloads at the same offsets into a prefaulted anonymous buffer of the same size. Both run
//! in the same process, pinned to one core, interleaved, best of several rounds.
//!
//! Run: `scripts/bench-append.sh` (or `cargo bench --bench append -- [segment MiB] [rounds]`).

use std::hint::black_box;
use std::time::Instant;

use wal_recorder::segment::format::{Framing, HEADER_LEN};
use wal_recorder::segment::SegmentWriter;

/// Bytes a version 1 record of `len` payload bytes occupies.
fn record_size(len: usize) -> usize {
    Framing::Plain.record_size(len)
}
/// A version 1 seal's length.
const SEAL_LEN: usize = Framing::Plain.seal_len();

const SIZES: [usize; 4] = [16, 64, 256, 1024];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seg_mib: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let seg_size = seg_mib << 20;
    let core = core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().next())
        .map(core_affinity::set_for_current);
    println!(
        "append vs memcpy: segment {seg_mib} MiB, best of {rounds} rounds, pinned: {}",
        core.unwrap_or(false)
    );
    println!("| record | append Mrec/s | append GB/s | memcpy Mrec/s | memcpy GB/s | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))
        .expect("tempdir");
    let mut index = 0;
    for len in SIZES {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let (mut best_a, mut best_m) = (f64::MAX, f64::MAX);
        let mut n = 0;
        for _ in 0..rounds {
            let mut w = SegmentWriter::create(dir.path(), index, seg_size, 1, 0).expect("segment");
            let path = w.path().to_path_buf();
            index += 1;
            let t = Instant::now();
            n = 0u64;
            while w.append(black_box(&payload)).is_ok() {
                n += 1;
            }
            best_a = best_a.min(t.elapsed().as_secs_f64());
            drop(w);
            std::fs::remove_file(path).expect("remove");

            best_m = best_m.min(memcpy_floor(&payload, seg_size as usize, n));
        }
        let bytes = (n as usize * len) as f64;
        println!(
            "| {len} B | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
            n as f64 / best_a / 1e6,
            bytes / best_a / 1e9,
            n as f64 / best_m / 1e6,
            bytes / best_m / 1e9,
            best_m / best_a
        );
    }
}

/// Copies `n` payloads at record-size strides into a prefaulted anonymous buffer.
fn memcpy_floor(payload: &[u8], size: usize, n: u64) -> f64 {
    let mut buf = vec![1u8; size]; // written once: every page is faulted in
    black_box(&mut buf);
    let stride = record_size(payload.len());
    assert!(HEADER_LEN + n as usize * stride + SEAL_LEN <= size);
    let t = Instant::now();
    let mut off = HEADER_LEN;
    for _ in 0..n {
        buf[off + 16..off + 16 + payload.len()].copy_from_slice(black_box(payload));
        off += stride;
    }
    black_box(&buf);
    t.elapsed().as_secs_f64()
}
