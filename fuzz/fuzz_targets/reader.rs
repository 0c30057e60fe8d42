//! The segment reader and the LZ4 frame decoder take arbitrary bytes without panicking.
#![no_main]

use std::io::Read;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wal_recorder::codec::block::BlockDecoder;
use wal_recorder::codec::lz4::FrameDecoder;
use wal_recorder::segment::SegmentReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = SegmentReader::new(data, Path::new("fuzz.wal")) {
        let _ = r.skip_to_end();
    }
    if let Ok(d) = FrameDecoder::new(data, Path::new("fuzz.wal.lz4")) {
        // A tiny frame may declare a huge content: read a bounded prefix.
        let mut out = Vec::new();
        let _ = d.take(4 << 20).read_to_end(&mut out);
    }
    // A compressed segment: the reader over the decoder.
    if let Ok(d) = FrameDecoder::new(data, Path::new("fuzz.wal.lz4")) {
        if let Ok(mut r) = SegmentReader::new(d.take(4 << 20), Path::new("fuzz.wal.lz4")) {
            let _ = r.skip_to_end();
        }
    }
    if let Ok(d) = BlockDecoder::new(data, Path::new("fuzz.wal.lz4")) {
        let mut out = Vec::new();
        let _ = d.take(4 << 20).read_to_end(&mut out);
    }
});
