//! LZ4 frames through the reference C library: a chunked encoder whose output any LZ4 frame
//! decoder reads (content checksum on, content size in the header), and a streaming decoder
//! that rejects a frame cut short anywhere, trailing bytes, and a content-size mismatch.

use std::ffi::CStr;
use std::io::{self, Read};
use std::path::Path;

use lz4_sys::{
    BlockChecksum, BlockMode, BlockSize, ContentChecksum, FrameType, LZ4FCompressOptions,
    LZ4FCompressionContext, LZ4FDecompressOptions, LZ4FDecompressionContext, LZ4FFrameInfo,
    LZ4FPreferences, LZ4F_VERSION,
};

use crate::error::{Error, Result};

/// Largest input the encoder accepts per call; the maintainer's chunk size.
pub const MAX_CHUNK: usize = 1024 * 1024;

/// Bytes of input the decoder hands to LZ4 per call.
const DECODE_IN: usize = 64 * 1024;

/// Content of one block of the frames we write (`BlockSize::Max64KB`).
pub const FRAME_BLOCK: usize = 64 * 1024;

/// Where the blocks of an encoding start: (offset in the content, offset in the compressed
/// bytes) of each, in order; a reader can start decoding at any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMap {
    /// The blocks' starts.
    pub starts: Vec<(u64, u64)>,
    /// Compressed bytes emitted so far.
    pub(crate) emitted: u64,
    /// The last block, partial, starts here and is emitted at the end.
    pub(crate) pending: Option<u64>,
    /// Input came in pieces that do not map to blocks: no start is known.
    pub(crate) broken: bool,
}

impl BlockMap {
    fn start(&mut self, content_offset: u64) {
        self.starts.push((content_offset, self.emitted));
    }

    /// The starts, unless they are unknown.
    pub fn known(&self) -> Option<&[(u64, u64)]> {
        (!self.broken).then_some(&self.starts[..])
    }
}

pub(crate) fn lz4f_error(code: usize) -> Option<String> {
    // SAFETY: LZ4F_isError is a pure function of the code.
    if unsafe { lz4_sys::LZ4F_isError(code) } == 0 {
        return None;
    }
    // SAFETY: LZ4F_getErrorName returns a static NUL-terminated string for any code.
    let name = unsafe { CStr::from_ptr(lz4_sys::LZ4F_getErrorName(code)) };
    Some(name.to_string_lossy().into_owned())
}

fn preferences(level: u32, content_size: u64) -> LZ4FPreferences {
    LZ4FPreferences {
        frame_info: LZ4FFrameInfo {
            block_size_id: BlockSize::Max64KB,
            // Independent blocks: a reader can start decoding at any block (the sparse
            // index, docs/FORMAT.md "Sparse index"); still one standard frame.
            block_mode: BlockMode::Independent,
            content_checksum_flag: ContentChecksum::ChecksumEnabled,
            frame_type: FrameType::Frame,
            content_size,
            dict_id: 0,
            block_checksum_flag: BlockChecksum::NoBlockChecksum,
        },
        compression_level: level,
        auto_flush: 0,
        favor_dec_speed: 0,
        reserved: [0; 3],
    }
}

/// Streams one LZ4 frame out of chunks of at most [`MAX_CHUNK`] bytes.
pub struct FrameEncoder {
    ctx: LZ4FCompressionContext,
    prefs: LZ4FPreferences,
    /// Worst-case output of one chunk (or of the frame end).
    bound: usize,
    consumed: u64,
    started: bool,
    /// Where each block starts, as it is emitted.
    blocks: BlockMap,
}

// SAFETY: the context is used by one thread at a time through `&mut self`.
unsafe impl Send for FrameEncoder {}

impl FrameEncoder {
    /// A new encoder for a frame whose content is exactly `content_size` bytes, at
    /// `level` (0 = fast default; 3..=12 are LZ4 HC).
    pub fn new(level: u32, content_size: u64) -> Result<Self> {
        Self::with_acceleration(level, 1, content_size)
    }

    /// As [`Self::new`]; at a fast level (below 3), `acceleration` above 1 trades ratio for
    /// speed (LZ4F's negative levels, `lz4 --fast=N`).
    pub(crate) fn with_acceleration(
        level: u32,
        acceleration: u32,
        content_size: u64,
    ) -> Result<Self> {
        let mut ctx = LZ4FCompressionContext(std::ptr::null_mut());
        // SAFETY: ctx is a valid out-pointer; the version matches the headers lz4-sys uses.
        let rc = unsafe { lz4_sys::LZ4F_createCompressionContext(&mut ctx, LZ4F_VERSION) };
        if let Some(why) = lz4f_error(rc) {
            return Err(Error::Compression(format!("LZ4F context: {why}")));
        }
        let mut prefs = preferences(level.min(12), content_size);
        if level < 3 && acceleration > 1 {
            // LZ4F reads the level as a C int: -N is acceleration N.
            prefs.compression_level = (-(acceleration.min(65_537) as i32)) as u32;
        }
        // SAFETY: prefs is a valid preferences struct.
        let bound = unsafe { lz4_sys::LZ4F_compressBound(MAX_CHUNK, &prefs) };
        Ok(FrameEncoder {
            ctx,
            prefs,
            bound: bound + 64,
            consumed: 0,
            started: false,
            blocks: BlockMap::default(),
        })
    }

    /// Largest number of bytes one `compress` or `finish` call may append.
    pub(crate) fn output_bound(&self) -> usize {
        self.bound
    }

    /// Compresses `input` (at most [`MAX_CHUNK`] bytes), appending to `out`. The frame header
    /// is emitted on the first call.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        assert!(input.len() <= MAX_CHUNK, "chunk larger than MAX_CHUNK");
        if !self.started {
            self.begin(out)?;
        }
        // One block's worth per call: with nothing buffered, LZ4F emits a full block at once,
        // so the output position before the call is where that block starts.
        for piece in input.chunks(FRAME_BLOCK) {
            if piece.len() == FRAME_BLOCK && self.consumed % FRAME_BLOCK as u64 == 0 {
                self.blocks.start(self.consumed);
            } else if self.consumed % FRAME_BLOCK as u64 == 0 {
                self.blocks.pending = Some(self.consumed); // emitted by `finish`
            } else {
                self.blocks.broken = true; // a partial block buffered, then more input
            }
            self.update(piece, out)?;
        }
        Ok(())
    }

    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.reserve(self.bound);
        let opts = LZ4FCompressOptions {
            stable_src: 0,
            reserved: [0; 3],
        };
        let spare = out.capacity() - out.len();
        // SAFETY: the destination is the spare capacity of `out` (at least `bound` bytes,
        // which LZ4F_compressBound guarantees is enough); input is a valid slice.
        let n = unsafe {
            lz4_sys::LZ4F_compressUpdate(
                self.ctx,
                out.as_mut_ptr().add(out.len()),
                spare,
                input.as_ptr(),
                input.len(),
                &opts,
            )
        };
        if let Some(why) = lz4f_error(n) {
            return Err(Error::Compression(format!("LZ4F compress: {why}")));
        }
        // SAFETY: LZ4F wrote exactly n initialised bytes into the spare capacity.
        unsafe { out.set_len(out.len() + n) };
        self.consumed += input.len() as u64;
        self.blocks.emitted += n as u64;
        Ok(())
    }

    fn begin(&mut self, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(64);
        let spare = out.capacity() - out.len();
        // SAFETY: the destination is spare capacity of at least 64 bytes, more than the
        // 19-byte maximum frame header.
        let n = unsafe {
            lz4_sys::LZ4F_compressBegin(
                self.ctx,
                out.as_mut_ptr().add(out.len()),
                spare,
                &self.prefs,
            )
        };
        if let Some(why) = lz4f_error(n) {
            return Err(Error::Compression(format!("LZ4F begin: {why}")));
        }
        // SAFETY: n bytes were written.
        unsafe { out.set_len(out.len() + n) };
        self.started = true;
        self.blocks.emitted += n as u64;
        Ok(())
    }

    /// Ends the frame (last block, end mark, content checksum), appending to `out`; returns
    /// where its blocks start.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<BlockMap> {
        if !self.started {
            self.begin(out)?;
        }
        if let Some(at) = self.blocks.pending.take() {
            self.blocks.start(at);
        }
        out.reserve(self.bound);
        let spare = out.capacity() - out.len();
        let opts = LZ4FCompressOptions {
            stable_src: 0,
            reserved: [0; 3],
        };
        // SAFETY: as in `compress`.
        let n = unsafe {
            lz4_sys::LZ4F_compressEnd(self.ctx, out.as_mut_ptr().add(out.len()), spare, &opts)
        };
        if let Some(why) = lz4f_error(n) {
            return Err(Error::Compression(format!("LZ4F end: {why}")));
        }
        // SAFETY: n bytes were written.
        unsafe { out.set_len(out.len() + n) };
        Ok(std::mem::take(&mut self.blocks))
    }

    /// Bytes of input consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

impl Drop for FrameEncoder {
    fn drop(&mut self) {
        // SAFETY: the context was created in `new` and is freed once.
        unsafe {
            lz4_sys::LZ4F_freeCompressionContext(self.ctx);
        }
    }
}

/// Compresses a whole buffer into one frame (tests, tools, the in-memory baseline).
pub fn compress_frame(input: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut enc = FrameEncoder::new(level, input.len() as u64)?;
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    for chunk in input.chunks(MAX_CHUNK) {
        enc.compress(chunk, &mut out)?;
    }
    enc.finish(&mut out)?;
    Ok(out)
}

/// Reads the content of exactly one LZ4 frame from `src`. Errors are `InvalidData` with a
/// message naming the file and the compressed offset.
pub struct FrameDecoder<R> {
    src: R,
    ctx: LZ4FDecompressionContext,
    inbuf: Box<[u8]>,
    in_pos: usize,
    in_end: usize,
    /// Compressed bytes consumed so far (for error messages).
    consumed: u64,
    /// The frame's end mark and checksum were read and verified.
    complete: bool,
}

// SAFETY: the context is used by one thread at a time through `&mut self`.
unsafe impl<R: Send> Send for FrameDecoder<R> {}

impl<R: Read> FrameDecoder<R> {
    /// A decoder reading the frame from `src`.
    pub fn new(src: R, path: &Path) -> Result<Self> {
        let mut ctx = LZ4FDecompressionContext(std::ptr::null_mut());
        // SAFETY: ctx is a valid out-pointer.
        let rc = unsafe { lz4_sys::LZ4F_createDecompressionContext(&mut ctx, LZ4F_VERSION) };
        if let Some(why) = lz4f_error(rc) {
            let at = path.display();
            return Err(Error::Compression(format!("LZ4F context for {at}: {why}")));
        }
        Ok(FrameDecoder {
            src,
            ctx,
            inbuf: vec![0u8; DECODE_IN].into_boxed_slice(),
            in_pos: 0,
            in_end: 0,
            consumed: 0,
            complete: false,
        })
    }

    fn invalid(&self, why: &str) -> io::Error {
        super::invalid_data(self.consumed, why)
    }

    /// After the frame ends, the file must end too.
    fn check_trailing(&mut self) -> io::Result<()> {
        if self.in_pos < self.in_end {
            return Err(self.invalid("bytes after the end of the LZ4 frame"));
        }
        let mut one = [0u8; 1];
        loop {
            match self.src.read(&mut one) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(self.invalid("bytes after the end of the LZ4 frame")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Read for FrameDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.complete {
            return Ok(0);
        }
        loop {
            if self.in_pos == self.in_end {
                let n = loop {
                    match self.src.read(&mut self.inbuf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        other => break other?,
                    }
                };
                if n == 0 {
                    return Err(self.invalid("LZ4 frame cut short"));
                }
                self.in_pos = 0;
                self.in_end = n;
            }
            let mut dst_len = out.len();
            let mut src_len = self.in_end - self.in_pos;
            let opts = LZ4FDecompressOptions {
                stable_dst: 0,
                reserved: [0; 3],
            };
            // SAFETY: dst and src are valid slices of the lengths passed; LZ4F updates the
            // lengths to what it wrote and read.
            let hint = unsafe {
                lz4_sys::LZ4F_decompress(
                    self.ctx,
                    out.as_mut_ptr(),
                    &mut dst_len,
                    self.inbuf.as_ptr().add(self.in_pos),
                    &mut src_len,
                    &opts,
                )
            };
            if let Some(why) = lz4f_error(hint) {
                return Err(self.invalid(&why));
            }
            self.in_pos += src_len;
            self.consumed += src_len as u64;
            if hint == 0 {
                self.complete = true;
                self.check_trailing()?;
                return Ok(dst_len);
            }
            if dst_len > 0 {
                return Ok(dst_len);
            }
        }
    }
}

impl<R> Drop for FrameDecoder<R> {
    fn drop(&mut self) {
        // SAFETY: the context was created in `new` and is freed once.
        unsafe {
            lz4_sys::LZ4F_freeDecompressionContext(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    #[test]
    fn frame_round_trips_across_chunks() {
        let data = sample(3 * MAX_CHUNK + 12345);
        let frame = compress_frame(&data, 0).unwrap();
        let mut dec = FrameDecoder::new(&frame[..], Path::new("t.lz4")).unwrap();
        let mut back = Vec::new();
        dec.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn frame_cut_short_anywhere_is_rejected() {
        let data = sample(300_000);
        let frame = compress_frame(&data, 0).unwrap();
        for cut in [1, 7, 15, frame.len() / 2, frame.len() - 5, frame.len() - 1] {
            let mut dec = FrameDecoder::new(&frame[..cut], Path::new("t.lz4")).unwrap();
            let mut back = Vec::new();
            let err = dec.read_to_end(&mut back).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_after_frame_are_rejected() {
        let mut frame = compress_frame(b"hello hello hello", 0).unwrap();
        frame.push(0);
        let mut dec = FrameDecoder::new(&frame[..], Path::new("t.lz4")).unwrap();
        let mut back = Vec::new();
        assert!(dec.read_to_end(&mut back).is_err());
    }
}
