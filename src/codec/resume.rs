//! Decoding a cold segment from one of its blocks instead of from its start: what a seek
//! through the sparse index does (docs/FORMAT.md, "Sparse index"). Only blocks that decode on
//! their own can be entered: an LZ4 frame with independent blocks (the frames written since
//! the index exists) or the block container. The frame's content checksum covers the whole
//! content and cannot be checked from the middle; the records' chained checksums are, by the
//! segment reader.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::block::BLOCK_MAGIC;
use super::LZ4_FRAME_MAGIC;
use crate::error::{Corruption, Error, Result};

/// Input buffer of the decoder.
const READ_BUF: usize = 64 * 1024;
/// Block container: each block's raw len, compressed len, CRC32C.
const BLOCK_HEADER: usize = 12;
/// The largest block the container holds.
const MAX_CONTAINER_BLOCK: usize = crate::constants::CHUNK_SIZE;

/// How the blocks are framed.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// An LZ4 frame: each block `size u32` (bit 31: stored raw) then its bytes, and a block
    /// checksum after each when `block_checksum`; a zero size ends it.
    Frame {
        block_max: usize,
        block_checksum: bool,
    },
    /// The block container.
    Container,
}

/// The content of a cold file from the block starting at a compressed offset on.
pub(crate) struct BlockStream {
    src: BufReader<File>,
    layout: Layout,
    raw: Vec<u8>,
    comp: Vec<u8>,
    pos: usize,
    done: bool,
    /// Compressed offset of the next block (for error messages).
    at: u64,
    /// Content bytes decoded so far, from where the stream started.
    produced: u64,
    /// (content offset from the stream's start, compressed offset) of each block decoded.
    starts: Vec<(u64, u64)>,
}

impl BlockStream {
    /// The content of `file` from the block whose header is at compressed offset `block`
    /// on; `None` when the file's blocks cannot be entered (linked LZ4 blocks, a foreign
    /// file). Errors name `path`.
    pub(crate) fn open(file: File, path: &Path, block: u64) -> Result<Option<Self>> {
        Self::open_at(file, path, Some(block))
    }

    /// The whole content of `file`, from its first block; `None` as for [`Self::open`].
    pub(crate) fn open_first(file: File, path: &Path) -> Result<Option<Self>> {
        Self::open_at(file, path, None)
    }

    fn open_at(mut file: File, path: &Path, block: Option<u64>) -> Result<Option<Self>> {
        let mut head = [0u8; 19];
        let got = read_up_to(&mut file, &mut head).map_err(|e| Error::io("read", path, e))?;
        let (layout, first) = if got >= 16 && head[..8] == BLOCK_MAGIC {
            (Layout::Container, 16)
        } else if got >= 7 && head[..4] == LZ4_FRAME_MAGIC {
            let (flg, bd) = (head[4], head[5]);
            let independent = flg & 0x20 != 0;
            let block_max = match (bd >> 4) & 0x7 {
                4 => 64 << 10,
                5 => 256 << 10,
                6 => 1 << 20,
                7 => 4 << 20,
                _ => return Ok(None),
            };
            if !independent || flg & 0x01 != 0 {
                return Ok(None); // linked blocks, or a dictionary: only from the start
            }
            // Magic, FLG, BD, the content size if present, the header checksum.
            let first = 7 + if flg & 0x08 != 0 { 8 } else { 0 };
            let layout = Layout::Frame {
                block_max,
                block_checksum: flg & 0x10 != 0,
            };
            (layout, first)
        } else {
            return Ok(None);
        };
        let block = block.unwrap_or(first);
        file.seek(SeekFrom::Start(block))
            .map_err(|e| Error::io("seek", path, e))?;
        Ok(Some(BlockStream {
            src: BufReader::with_capacity(READ_BUF, file),
            layout,
            raw: Vec::new(),
            comp: Vec::new(),
            pos: 0,
            done: false,
            at: block,
            produced: 0,
            starts: Vec::new(),
        }))
    }

    fn invalid(&self, why: &str) -> io::Error {
        super::invalid_data(self.at, why)
    }

    /// Where each block decoded so far starts: (content offset from where the stream started,
    /// compressed offset).
    pub(crate) fn starts(&self) -> &[(u64, u64)] {
        &self.starts
    }

    fn next_block(&mut self) -> io::Result<()> {
        let block_at = self.at;
        let (raw_len, comp_len, stored, crc) = match self.layout {
            Layout::Frame { block_max, .. } => {
                let mut h = [0u8; 4];
                self.read_exact_or(&mut h, "LZ4 frame cut short")?;
                let word = u32::from_le_bytes(h);
                if word == 0 {
                    // The end mark; the content checksum after it covers what we skipped.
                    self.done = true;
                    return Ok(());
                }
                let len = (word & 0x7fff_ffff) as usize;
                if len > block_max {
                    return Err(self.invalid("block larger than the frame's block size"));
                }
                (block_max, len, word & 0x8000_0000 != 0, None)
            }
            Layout::Container => {
                let mut h = [0u8; BLOCK_HEADER];
                self.read_exact_or(&mut h, "block container cut short")?;
                let raw = u32::from_le_bytes(h[0..4].try_into().expect("4")) as usize;
                let comp = u32::from_le_bytes(h[4..8].try_into().expect("4")) as usize;
                let crc = u32::from_le_bytes(h[8..12].try_into().expect("4"));
                if raw == 0 {
                    self.done = true;
                    return Ok(());
                }
                // SAFETY: pure function of its argument.
                let bound =
                    unsafe { lz4_sys::LZ4_compressBound(MAX_CONTAINER_BLOCK as i32) } as usize;
                if raw > MAX_CONTAINER_BLOCK || comp == 0 || comp > bound {
                    return Err(self.invalid("impossible block lengths"));
                }
                (raw, comp, false, Some(crc))
            }
        };
        self.comp.resize(comp_len, 0);
        let mut comp = std::mem::take(&mut self.comp);
        let read = self.read_exact_or(&mut comp, "block cut short");
        self.comp = comp;
        read?;
        if stored {
            self.raw.clear();
            self.raw.extend_from_slice(&self.comp);
        } else {
            self.raw.resize(raw_len, 0);
            let n = match super::decode_block(&self.comp, &mut self.raw) {
                Some(n) if crc.is_none() || n == raw_len => n,
                _ => return Err(self.invalid("block does not decode")),
            };
            self.raw.truncate(n);
        }
        if crc.is_some_and(|c| crc32c::crc32c(&self.raw) != c) {
            return Err(self.invalid("block does not decode to its checksum"));
        }
        let mut skip = BLOCK_HEADER as u64;
        if let Layout::Frame { block_checksum, .. } = self.layout {
            skip = 4;
            if block_checksum {
                let mut c = [0u8; 4];
                self.read_exact_or(&mut c, "LZ4 frame cut short")?;
                skip += 4;
            }
        }
        self.at += skip + comp_len as u64;
        self.pos = 0;
        self.starts.push((self.produced, block_at));
        self.produced += self.raw.len() as u64;
        Ok(())
    }

    fn read_exact_or(&mut self, buf: &mut [u8], why: &str) -> io::Result<()> {
        match self.src.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.invalid(why)),
            Err(e) => Err(e),
        }
    }
}

impl Read for BlockStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.raw.len() {
            if self.done {
                return Ok(0);
            }
            self.next_block()?;
            if self.done {
                return Ok(0);
            }
        }
        let n = out.len().min(self.raw.len() - self.pos);
        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for BlockStream {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.raw.len() && !self.done {
            self.next_block()?;
        }
        Ok(&self.raw[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.raw.len());
    }
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Skips `n` bytes of `src` (the content between a block's start and a record in it).
pub(crate) fn skip(src: &mut impl Read, mut n: u64, path: &Path) -> Result<()> {
    let mut buf = [0u8; 4096];
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::corrupt(
                    path,
                    0,
                    Corruption::BadFrame("the index points past the content".into()),
                ))
            }
            Ok(got) => n -= got as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ColdEncoder;
    use crate::config::Compression;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 31) ^ (i >> 9)) as u8).collect()
    }

    /// Every block start the encoder reports decodes, from there on, to the content's rest.
    #[test]
    fn every_reported_block_start_decodes_to_the_rest() {
        let data = sample(3 * 1024 * 1024 + 12_345);
        for c in [
            Compression::Frame { level: 0 },
            Compression::Frame { level: 9 },
            Compression::Block { level: 0 },
        ] {
            let mut enc = ColdEncoder::new(c, data.len() as u64).unwrap();
            let mut out = Vec::new();
            for chunk in data.chunks(1024 * 1024) {
                enc.compress(chunk, &mut out).unwrap();
            }
            let map = enc.finish(&mut out).unwrap();
            let starts = map.known().expect("aligned input").to_vec();
            let want = match c {
                Compression::Frame { .. } => data.len().div_ceil(64 * 1024),
                Compression::Block { .. } => data.len().div_ceil(1024 * 1024),
            };
            assert_eq!(starts.len(), want, "{c:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("0.wal.lz4");
            std::fs::write(&path, &out).unwrap();
            let f = File::open(&path).unwrap();
            let mut s = BlockStream::open_first(f, &path)
                .unwrap()
                .expect("enterable");
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            assert!(all == data, "{c:?} from its start");
            for &(uoff, coff) in starts.iter().step_by(7).chain(starts.last()) {
                let f = File::open(&path).unwrap();
                let mut s = BlockStream::open(f, &path, coff)
                    .unwrap()
                    .expect("enterable");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                assert!(rest == data[uoff as usize..], "{c:?} from {uoff}");
            }
            // A wrong offset is an error or other bytes, never the content.
            let f = File::open(&path).unwrap();
            let (uoff, coff) = starts[1];
            if let Some(mut s) = BlockStream::open(f, &path, coff + 1).unwrap() {
                let mut rest = Vec::new();
                let r = s.read_to_end(&mut rest);
                assert!(r.is_err() || rest != data[uoff as usize..]);
            }
        }
    }

    #[test]
    fn linked_frames_cannot_be_entered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.wal.lz4");
        // FLG 0x4C: version 01, linked blocks, content size and checksum; BD 0x40: 64 KiB.
        std::fs::write(
            &path,
            [0x04, 0x22, 0x4d, 0x18, 0x4c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap();
        let f = File::open(&path).unwrap();
        assert!(BlockStream::open(f, &path, 15).unwrap().is_none());
    }
}
