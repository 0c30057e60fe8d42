//! Compression of cold segments: safe wrappers over the C LZ4 library (lz4-sys). The only
//! module besides `segment` and `io` that holds `unsafe` code.

pub mod lz4;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::Result;

/// Input buffer of the cold-segment decoder.
const COLD_READ_BUF: usize = 256 * 1024;

/// Opens a `.wal.lz4` as the byte stream of the segment it holds.
pub fn open_cold(file: File, path: &Path) -> Result<Box<dyn Read + Send>> {
    let src = BufReader::with_capacity(COLD_READ_BUF, file);
    Ok(Box::new(lz4::FrameDecoder::new(src, path)?))
}
