//! Reads a segment for upload: its bytes, their CRC32C, and its sequence range, checking
//! every record on the way so a damaged file is never archived as if it were good.

use std::io::Cursor;
use std::path::Path;

use crate::codec::{open_cold_reader, ColdEncoder};
use crate::config::Compression;
use crate::error::{Corruption, Error, Result};
use crate::segment::format::TimeRange;
use crate::segment::{SegmentEnd, SegmentReader};

/// A cold segment ready to upload.
pub struct ColdBytes {
    /// The `.wal.lz4` bytes.
    pub data: Vec<u8>,
    /// CRC32C of `data`.
    pub crc32c: u32,
    /// First sequence number.
    pub first_seq: u64,
    /// Last sequence number (`first_seq - 1` when empty).
    pub last_seq: u64,
    /// Its records' time range (format version 2, at least one record).
    pub times: Option<TimeRange>,
}

/// Decodes `data` (a `.wal.lz4`, named `name` in errors) to its end and checks it.
pub(crate) fn scan_cold_bytes(data: Vec<u8>, name: &Path) -> Result<ColdBytes> {
    let (first_seq, last_seq, times) = {
        let src = open_cold_reader(&data[..], name)?;
        let mut r = SegmentReader::new(src, name)?;
        match r.skip_to_end()? {
            SegmentEnd::Sealed(_) => {}
            SegmentEnd::Open { offset } => {
                return Err(Error::corrupt(
                    name,
                    offset,
                    Corruption::BadSeal("compressed segment without a seal"),
                ))
            }
            SegmentEnd::Broken { offset, kind, .. } => {
                return Err(Error::corrupt(name, offset, kind))
            }
        }
        r.expect_end_of_stream()?;
        let times = r.times().filter(|_| r.count() > 0);
        (r.header().first_seq, r.next_seq().wrapping_sub(1), times)
    };
    let crc32c = crc32c::crc32c(&data);
    Ok(ColdBytes {
        data,
        crc32c,
        first_seq,
        last_seq,
        times,
    })
}

/// Reads and checks the `.wal.lz4` at `path`.
pub(crate) fn read_cold(path: &Path) -> Result<ColdBytes> {
    let data = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    scan_cold_bytes(data, path)
}

/// Compresses the sealed `.wal` at `path` into the same standard LZ4 frame a freeze makes,
/// and checks the result.
pub(crate) fn compress_hot(path: &Path) -> Result<ColdBytes> {
    let raw = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let mut r = SegmentReader::new(Cursor::new(&raw[..]), path)?;
    match r.skip_to_end()? {
        SegmentEnd::Sealed(_) => {}
        SegmentEnd::Open { offset } => {
            return Err(Error::corrupt(
                path,
                offset,
                Corruption::BadSeal("segment not sealed (the log is open or was not recovered)"),
            ))
        }
        SegmentEnd::Broken { offset, kind, .. } => return Err(Error::corrupt(path, offset, kind)),
    }
    let mut enc = ColdEncoder::new(Compression::default(), raw.len() as u64)?;
    let mut out = Vec::with_capacity(enc.output_bound().max(raw.len() / 2));
    for chunk in raw.chunks(crate::codec::lz4::MAX_CHUNK) {
        enc.compress(chunk, &mut out)?;
    }
    enc.finish(&mut out)?;
    scan_cold_bytes(out, path)
}
