//! Compression of cold segments: safe wrappers over the C LZ4 library (lz4-sys). The only
//! module besides `segment` and `io` that holds `unsafe` code.

pub mod block;
pub mod check;
pub mod lz4;
pub(crate) mod resume;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::config::Compression;
use crate::error::{Corruption, Error, Result};

/// Input buffer of the cold-segment decoder.
const COLD_READ_BUF: usize = 256 * 1024;

/// The error both decoders return for damaged input: `InvalidData` with the offset in the
/// compressed bytes (the caller's error names the file).
pub(crate) fn invalid_data(compressed_offset: u64, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("compressed offset {compressed_offset}: {why}"),
    )
}

/// Decodes one LZ4 block `src` into `dst`; the bytes written, or `None` if it does not decode
/// (LZ4_decompress_safe: never reads or writes outside the slices).
pub(crate) fn decode_block(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let (Ok(src_len), Ok(dst_len)) = (i32::try_from(src.len()), i32::try_from(dst.len())) else {
        return None;
    };
    // SAFETY: src and dst are valid for the lengths passed; decompress_safe never writes past
    // dst and returns how much it wrote, or a negative error.
    let n = unsafe {
        lz4_sys::LZ4_decompress_safe(
            src.as_ptr().cast(),
            dst.as_mut_ptr().cast(),
            src_len,
            dst_len,
        )
    };
    usize::try_from(n).ok()
}

/// Magic number of an LZ4 frame, little-endian on disk.
const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Opens a `.wal.lz4` as the byte stream of the segment it holds; the first bytes tell an
/// LZ4 frame from the block-mode container.
pub fn open_cold(file: File, path: &Path) -> Result<Box<dyn Read + Send>> {
    open_cold_reader(BufReader::with_capacity(COLD_READ_BUF, file), path)
}

/// As [`open_cold`], over any buffered source (an object downloaded from the archive);
/// `path` names it in errors.
pub(crate) fn open_cold_reader<'a, R: BufRead + Send + 'a>(
    mut src: R,
    path: &Path,
) -> Result<Box<dyn Read + Send + 'a>> {
    let head = src.fill_buf().map_err(|e| Error::io("read", path, e))?;
    if head.starts_with(&block::BLOCK_MAGIC[..head.len().min(8)]) && head.len() >= 8 {
        Ok(Box::new(block::BlockDecoder::new(src, path)?))
    } else if head.len() >= 4 && head[..4] == LZ4_FRAME_MAGIC {
        Ok(Box::new(lz4::FrameDecoder::new(src, path)?))
    } else {
        let why = if head.is_empty() {
            "empty file"
        } else {
            "neither an LZ4 frame nor a block container"
        };
        Err(Error::corrupt(path, 0, Corruption::BadFrame(why.into())))
    }
}

/// The uncompressed size a cold file declares in its header (LZ4 frame content size, or the
/// block container's content size), without decoding it. `None` if it declares none.
pub fn cold_content_size(path: &Path) -> Result<Option<u64>> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = [0u8; 16];
    let mut got = 0;
    while got < h.len() {
        match f.read(&mut h[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    if got >= 16 && h[..8] == block::BLOCK_MAGIC {
        return Ok(Some(u64::from_le_bytes(
            h[8..16].try_into().expect("8 bytes"),
        )));
    }
    // LZ4 frame: magic, FLG (bit 3: content size present), BD, then 8 bytes of size.
    if got >= 14 && h[..4] == LZ4_FRAME_MAGIC && h[4] & 0x08 != 0 {
        return Ok(Some(u64::from_le_bytes(
            h[6..14].try_into().expect("8 bytes"),
        )));
    }
    Ok(None)
}

/// Compresses the sealed, truncated hot segment `index` of `dir` into its `.wal.lz4` as a
/// freeze does (encoding `c`, the sparse index written into `index/`), leaving the `.wal` in
/// place and nothing synced: for tools, tests and benchmarks that build logs by hand.
/// Returns the cold file's size.
pub fn compress_segment(dir: &Path, index: u64, c: Compression) -> Result<u64> {
    use crate::segment::names::{cold_name, hot_name};
    use crate::segment::sparse_index::{write_index, IndexBuilder};
    let hot = dir.join(hot_name(index));
    let raw = std::fs::read(&hot).map_err(|e| Error::io("read", &hot, e))?;
    let mut enc = ColdEncoder::new(c, raw.len() as u64)?;
    let mut builder = IndexBuilder::new();
    let mut out = Vec::with_capacity(raw.len() / 2 + 1024);
    for chunk in raw.chunks(crate::constants::CHUNK_SIZE) {
        enc.compress(chunk, &mut out)?;
        builder.feed(chunk);
    }
    let blocks = enc.finish(&mut out)?;
    let cold = dir.join(cold_name(index));
    std::fs::write(&cold, &out).map_err(|e| Error::io("write", &cold, e))?;
    let idx = blocks
        .known()
        .and_then(|starts| builder.finish(starts, out.len() as u64));
    if let Some(idx) = idx {
        write_index(dir, index, &idx).map_err(|e| Error::io("write", dir, e))?;
    }
    Ok(out.len() as u64)
}

/// Builds the sparse index of cold segment `index` of `dir` from its file and writes it, for a
/// segment that has none (restored from an archive, or whose index was lost). `Ok(false)`
/// when the file's blocks cannot be entered (a frame with linked blocks, written before the
/// index existed) or it does not hold a segment; errors name the file.
pub fn reindex_cold(dir: &Path, index: u64) -> Result<bool> {
    use crate::segment::sparse_index::{write_index, IndexBuilder};
    let path = dir.join(crate::segment::names::cold_name(index));
    let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("stat", &path, e))?
        .len();
    let Some(mut blocks) = resume::BlockStream::open_first(file, &path)? else {
        return Ok(false);
    };
    let mut builder = IndexBuilder::new();
    loop {
        let piece = blocks.fill_buf().map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                Error::corrupt(&path, 0, Corruption::BadFrame(e.to_string()))
            }
            _ => Error::io("read", &path, e),
        })?;
        if piece.is_empty() {
            break;
        }
        let n = piece.len();
        builder.feed(piece);
        blocks.consume(n);
    }
    let Some(idx) = builder.finish(blocks.starts(), file_len) else {
        return Ok(false);
    };
    if idx.header.index != index {
        return Ok(false);
    }
    write_index(dir, index, &idx).map_err(|e| Error::io("write", dir, e))?;
    Ok(true)
}

/// The encoder a freeze uses.
pub enum ColdEncoder {
    /// A standard LZ4 frame.
    Frame(lz4::FrameEncoder),
    /// The block-mode container.
    Block(block::BlockEncoder),
}

impl ColdEncoder {
    /// An encoder for `content_size` bytes.
    pub fn new(c: Compression, content_size: u64) -> Result<Self> {
        Self::with_acceleration(c, 1, content_size)
    }

    /// As [`Self::new`], with LZ4 acceleration `a` at fast levels (1: none).
    pub(crate) fn with_acceleration(c: Compression, a: u32, content_size: u64) -> Result<Self> {
        Ok(match c {
            Compression::Frame { level } => ColdEncoder::Frame(
                lz4::FrameEncoder::with_acceleration(level, a, content_size)?,
            ),
            Compression::Block { level } => ColdEncoder::Block(
                block::BlockEncoder::with_acceleration(level, a, content_size),
            ),
        })
    }

    /// Worst-case bytes one call appends.
    pub(crate) fn output_bound(&self) -> usize {
        match self {
            ColdEncoder::Frame(e) => e.output_bound(),
            ColdEncoder::Block(e) => e.output_bound(),
        }
    }

    /// Compresses one chunk (at most 1 MiB), appending to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self {
            ColdEncoder::Frame(e) => e.compress(input, out),
            ColdEncoder::Block(e) => e.compress(input, out),
        }
    }

    /// Ends the stream, appending to `out`; returns where its blocks start.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<lz4::BlockMap> {
        match self {
            ColdEncoder::Frame(e) => e.finish(out),
            ColdEncoder::Block(e) => e.finish(out),
        }
    }
}
