//! LZ4 block mode in our own container, for users who want independent blocks with a
//! per-block checksum instead of a standard frame (documented in docs/FORMAT.md):
//!
//! ```text
//! header:  magic "WALRLZB\x01" (8) | content size u64 (8)
//! block:   raw len u32 | compressed len u32 | CRC32C of the raw bytes u32 | LZ4 block
//! end:     raw len 0   | compressed len 0   | CRC32C of the whole content u32
//! ```
//!
//! Each block holds at most 1 MiB of content, compressed on its own (LZ4_compress_fast, or
//! LZ4_compress_HC at level ≥ 3).

use std::io::{self, Read};
use std::path::Path;

use crate::constants::CHUNK_SIZE;
use crate::error::{Error, Result};

/// First bytes of a block-mode cold segment.
pub const BLOCK_MAGIC: [u8; 8] = *b"WALRLZB\x01";
const BLOCK_HEADER: usize = 12;

/// Compresses chunks of at most 1 MiB into the container.
pub struct BlockEncoder {
    level: u32,
    acceleration: u32,
    content_size: u64,
    total_crc: u32,
    started: bool,
    blocks: super::lz4::BlockMap,
    consumed: u64,
}

impl BlockEncoder {
    /// An encoder for `content_size` bytes.
    pub fn new(level: u32, content_size: u64) -> Self {
        Self::with_acceleration(level, 1, content_size)
    }

    /// As [`Self::new`]; at a fast level (below 3), `acceleration` above 1 trades ratio for
    /// speed (`LZ4_compress_fast`).
    pub(crate) fn with_acceleration(level: u32, acceleration: u32, content_size: u64) -> Self {
        BlockEncoder {
            level,
            acceleration: acceleration.clamp(1, 65_537),
            content_size,
            total_crc: 0,
            started: false,
            blocks: Default::default(),
            consumed: 0,
        }
    }

    /// Worst-case bytes one call appends.
    pub(crate) fn output_bound(&self) -> usize {
        // SAFETY: pure function of its argument.
        let b = unsafe { lz4_sys::LZ4_compressBound(CHUNK_SIZE as i32) } as usize;
        16 + BLOCK_HEADER + b
    }

    /// Compresses one chunk, appending to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        assert!(input.len() <= CHUNK_SIZE, "chunk larger than CHUNK_SIZE");
        if !self.started {
            out.extend_from_slice(&BLOCK_MAGIC);
            out.extend_from_slice(&self.content_size.to_le_bytes());
            self.started = true;
            self.blocks.emitted += 16;
        }
        if input.is_empty() {
            return Ok(());
        }
        self.blocks
            .starts
            .push((self.consumed, self.blocks.emitted));
        self.total_crc = crc32c::crc32c_append(self.total_crc, input);
        let start = out.len();
        // SAFETY: pure function of its argument.
        let bound = unsafe { lz4_sys::LZ4_compressBound(input.len() as i32) } as usize;
        out.resize(start + BLOCK_HEADER + bound, 0);
        let dst = &mut out[start + BLOCK_HEADER..];
        // SAFETY: src and dst are valid for the lengths passed; dst has the bound's room.
        let n = unsafe {
            if self.level >= 3 {
                lz4_sys::LZ4_compress_HC(
                    input.as_ptr().cast(),
                    dst.as_mut_ptr().cast(),
                    input.len() as i32,
                    bound as i32,
                    self.level as i32,
                )
            } else {
                lz4_sys::LZ4_compress_fast(
                    input.as_ptr().cast(),
                    dst.as_mut_ptr().cast(),
                    input.len() as i32,
                    bound as i32,
                    self.acceleration as i32,
                )
            }
        };
        if n <= 0 {
            return Err(Error::Compression("block compression failed".into()));
        }
        out.truncate(start + BLOCK_HEADER + n as usize);
        out[start..start + 4].copy_from_slice(&(input.len() as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&(n as u32).to_le_bytes());
        out[start + 8..start + 12].copy_from_slice(&crc32c::crc32c(input).to_le_bytes());
        self.consumed += input.len() as u64;
        self.blocks.emitted += (BLOCK_HEADER + n as usize) as u64;
        Ok(())
    }

    /// Writes the end block; returns where the blocks start.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<super::lz4::BlockMap> {
        if !self.started {
            self.compress(&[], out)?;
        }
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&self.total_crc.to_le_bytes());
        Ok(self.blocks)
    }
}

/// Reads the content of a block-mode container.
pub struct BlockDecoder<R> {
    src: R,
    content_size: u64,
    produced: u64,
    total_crc: u32,
    raw: Vec<u8>,
    comp: Vec<u8>,
    pos: usize,
    done: bool,
    consumed: u64,
}

impl<R: Read> BlockDecoder<R> {
    /// Reads the container header.
    pub fn new(mut src: R, path: &Path) -> Result<Self> {
        let mut h = [0u8; 16];
        let bad = |why: &str| {
            Error::corrupt(
                path,
                0,
                crate::Corruption::BadFrame(format!("block container: {why}")),
            )
        };
        src.read_exact(&mut h)
            .map_err(|_| bad("header cut short"))?;
        if h[..8] != BLOCK_MAGIC {
            return Err(bad("bad magic"));
        }
        Ok(BlockDecoder {
            src,
            content_size: u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")),
            produced: 0,
            total_crc: 0,
            raw: Vec::new(),
            comp: Vec::new(),
            pos: 0,
            done: false,
            consumed: 16,
        })
    }

    fn invalid(&self, why: &str) -> io::Error {
        super::invalid_data(self.consumed, why)
    }

    fn next_block(&mut self) -> io::Result<()> {
        let mut h = [0u8; BLOCK_HEADER];
        self.src
            .read_exact(&mut h)
            .map_err(|_| self.invalid("block container cut short"))?;
        let raw_len = u32::from_le_bytes(h[0..4].try_into().expect("4")) as usize;
        let comp_len = u32::from_le_bytes(h[4..8].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(h[8..12].try_into().expect("4"));
        if raw_len == 0 {
            if comp_len != 0 || crc != self.total_crc || self.produced != self.content_size {
                return Err(self.invalid("end block disagrees with the content"));
            }
            let mut one = [0u8; 1];
            if self.src.read(&mut one)? != 0 {
                return Err(self.invalid("bytes after the end block"));
            }
            self.done = true;
            return Ok(());
        }
        // SAFETY: pure function of its argument.
        let max_comp = unsafe { lz4_sys::LZ4_compressBound(CHUNK_SIZE as i32) } as usize;
        if raw_len > CHUNK_SIZE || comp_len == 0 || comp_len > max_comp {
            return Err(self.invalid("impossible block lengths"));
        }
        self.comp.resize(comp_len, 0);
        self.src
            .read_exact(&mut self.comp)
            .map_err(|_| self.invalid("block cut short"))?;
        self.raw.resize(raw_len, 0);
        let n = super::decode_block(&self.comp, &mut self.raw);
        if n != Some(raw_len) || crc32c::crc32c(&self.raw) != crc {
            return Err(self.invalid("block does not decode to its checksum"));
        }
        self.consumed += (BLOCK_HEADER + comp_len) as u64;
        self.total_crc = crc32c::crc32c_append(self.total_crc, &self.raw);
        self.produced += raw_len as u64;
        if self.produced > self.content_size {
            return Err(self.invalid("more content than the header declares"));
        }
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for BlockDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.raw.len() {
            if self.done {
                return Ok(0);
            }
            self.raw.clear();
            self.pos = 0;
            self.next_block()?;
        }
        let n = (self.raw.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = BlockEncoder::new(level, data.len() as u64);
        let mut out = Vec::new();
        for c in data.chunks(CHUNK_SIZE) {
            e.compress(c, &mut out).unwrap();
        }
        e.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn block_container_round_trips_and_rejects_damage() {
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 97) as u8).collect();
        for level in [0, 9] {
            let c = encode(&data, level);
            let mut back = Vec::new();
            BlockDecoder::new(&c[..], Path::new("x"))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
            for cut in [20, c.len() / 2, c.len() - 1] {
                let mut d = BlockDecoder::new(&c[..cut], Path::new("x")).unwrap();
                assert!(d.read_to_end(&mut Vec::new()).is_err(), "cut {cut}");
            }
            let mut bad = c.clone();
            bad[40] ^= 1;
            let mut d = BlockDecoder::new(&bad[..], Path::new("x")).unwrap();
            assert!(d.read_to_end(&mut Vec::new()).is_err());
        }
    }
}
