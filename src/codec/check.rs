//! The freeze's check of its own output, streamed: each piece of compressed output is
//! decoded in memory as soon as it is produced, and the decoded bytes' length and CRC32C are
//! compared with the segment's at the end. The segment is never read a second time and the
//! tmp file never read back.

use crate::config::Compression;
use crate::constants::CHUNK_SIZE;

use super::block::BLOCK_MAGIC;

/// Bytes decoded per LZ4F call.
const SCRATCH: usize = 256 * 1024;
/// Block container: header, and per block raw len, compressed len, CRC32C.
const BLOCK_FILE_HEADER: usize = 16;
const BLOCK_HEADER: usize = 12;

/// Decodes a cold encoding fed in pieces, in order; see the module documentation.
pub struct StreamCheck {
    kind: Kind,
    scratch: Vec<u8>,
    len: u64,
    crc: u32,
    complete: bool,
}

enum Kind {
    Frame(lz4_sys::LZ4FDecompressionContext),
    /// Bytes of the container not yet parsed (a block is produced whole, but be safe).
    Block {
        pending: Vec<u8>,
        header: bool,
    },
}

// SAFETY: the LZ4F context is used by one thread at a time through `&mut self`.
unsafe impl Send for StreamCheck {}

impl StreamCheck {
    /// A check for output in encoding `c`.
    pub fn new(c: Compression) -> Result<Self, String> {
        let kind = match c {
            Compression::Frame { .. } => {
                let mut ctx = lz4_sys::LZ4FDecompressionContext(std::ptr::null_mut());
                // SAFETY: ctx is a valid out-pointer.
                let rc = unsafe {
                    lz4_sys::LZ4F_createDecompressionContext(&mut ctx, lz4_sys::LZ4F_VERSION)
                };
                if let Some(why) = super::lz4::lz4f_error(rc) {
                    return Err(format!("LZ4F context: {why}"));
                }
                Kind::Frame(ctx)
            }
            Compression::Block { .. } => Kind::Block {
                pending: Vec::new(),
                header: false,
            },
        };
        Ok(StreamCheck {
            kind,
            scratch: vec![0u8; SCRATCH.max(CHUNK_SIZE)],
            len: 0,
            crc: 0,
            complete: false,
        })
    }

    /// Decodes the next piece of compressed output.
    pub fn feed(&mut self, mut src: &[u8]) -> Result<(), String> {
        match &mut self.kind {
            Kind::Frame(ctx) => {
                while !src.is_empty() {
                    if self.complete {
                        return Err("bytes after the end of the LZ4 frame".into());
                    }
                    let mut dst_len = self.scratch.len();
                    let mut src_len = src.len();
                    // reserved[0] is liblz4's `skipChecksums` (1.9.3 and later): the
                    // decoded bytes' CRC32C is compared below, so LZ4's own XXH32 of them
                    // (the encoder computed it over the same input) is not computed twice.
                    let opts = lz4_sys::LZ4FDecompressOptions {
                        stable_dst: 0,
                        reserved: [1, 0, 0],
                    };
                    // SAFETY: dst and src are valid for the lengths passed; LZ4F updates them
                    // to what it wrote and read.
                    let hint = unsafe {
                        lz4_sys::LZ4F_decompress(
                            *ctx,
                            self.scratch.as_mut_ptr(),
                            &mut dst_len,
                            src.as_ptr(),
                            &mut src_len,
                            &opts,
                        )
                    };
                    if let Some(why) = super::lz4::lz4f_error(hint) {
                        return Err(why);
                    }
                    self.crc = crc32c::crc32c_append(self.crc, &self.scratch[..dst_len]);
                    self.len += dst_len as u64;
                    src = &src[src_len..];
                    self.complete = hint == 0;
                }
                Ok(())
            }
            Kind::Block { pending, header } => {
                pending.extend_from_slice(src);
                let mut at = 0;
                if !*header {
                    if pending.len() < BLOCK_FILE_HEADER {
                        return Ok(());
                    }
                    if pending[..8] != BLOCK_MAGIC {
                        return Err("block container: bad magic".into());
                    }
                    *header = true;
                    at = BLOCK_FILE_HEADER;
                }
                while pending.len() - at >= BLOCK_HEADER {
                    if self.complete {
                        return Err("bytes after the end block".into());
                    }
                    let h = &pending[at..at + BLOCK_HEADER];
                    let raw = u32::from_le_bytes(h[0..4].try_into().expect("4")) as usize;
                    let comp = u32::from_le_bytes(h[4..8].try_into().expect("4")) as usize;
                    let crc = u32::from_le_bytes(h[8..12].try_into().expect("4"));
                    if raw == 0 {
                        if comp != 0 || crc != self.crc {
                            return Err("end block disagrees with the content".into());
                        }
                        self.complete = true;
                        at += BLOCK_HEADER;
                        continue;
                    }
                    if raw > self.scratch.len() {
                        return Err("impossible block length".into());
                    }
                    if pending.len() - at - BLOCK_HEADER < comp {
                        break; // the rest of the block comes with the next piece
                    }
                    let body = &pending[at + BLOCK_HEADER..at + BLOCK_HEADER + comp];
                    let n = super::decode_block(body, &mut self.scratch[..raw]);
                    let out = &self.scratch[..raw];
                    if n != Some(raw) || crc32c::crc32c(out) != crc {
                        return Err("block does not decode to its checksum".into());
                    }
                    self.crc = crc32c::crc32c_append(self.crc, out);
                    self.len += raw as u64;
                    at += BLOCK_HEADER + comp;
                }
                pending.drain(..at);
                Ok(())
            }
        }
    }

    /// Ends the check: the encoding must be complete and decode to `len` bytes of CRC32C
    /// `crc`.
    pub fn finish(self, len: u64, crc: u32) -> Result<(), String> {
        if !self.complete {
            return Err("the compressed output ends before its end mark".into());
        }
        if self.len != len || self.crc != crc {
            return Err(format!(
                "decoded {} bytes (CRC32C {:08x}), the segment has {len} ({crc:08x})",
                self.len, self.crc
            ));
        }
        Ok(())
    }
}

impl Drop for StreamCheck {
    fn drop(&mut self) {
        if let Kind::Frame(ctx) = self.kind {
            // SAFETY: the context was created in `new` and is freed once.
            unsafe {
                lz4_sys::LZ4F_freeDecompressionContext(ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ColdEncoder;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    fn encode(c: Compression, data: &[u8]) -> Vec<Vec<u8>> {
        let mut enc = ColdEncoder::new(c, data.len() as u64).unwrap();
        let mut pieces = Vec::new();
        for chunk in data.chunks(CHUNK_SIZE) {
            let mut out = Vec::new();
            enc.compress(chunk, &mut out).unwrap();
            pieces.push(out);
        }
        let mut out = Vec::new();
        enc.finish(&mut out).unwrap();
        pieces.push(out);
        pieces
    }

    fn check(c: Compression, pieces: &[Vec<u8>], data: &[u8]) -> Result<(), String> {
        let mut s = StreamCheck::new(c)?;
        for p in pieces {
            s.feed(p)?;
        }
        s.finish(data.len() as u64, crc32c::crc32c(data))
    }

    const BOTH: [Compression; 2] = [
        Compression::Frame { level: 0 },
        Compression::Block { level: 0 },
    ];

    #[test]
    fn output_fed_piece_by_piece_checks_out() {
        let data = sample(3 * CHUNK_SIZE + 777);
        for c in BOTH {
            check(c, &encode(c, &data), &data).unwrap();
        }
    }

    #[test]
    fn a_flipped_byte_a_missing_end_or_other_content_is_caught() {
        let data = sample(2 * CHUNK_SIZE + 5);
        for c in BOTH {
            let good = encode(c, &data);
            let mut flipped = good.clone();
            let mid = flipped[0].len() / 2;
            flipped[0][mid] ^= 0x20;
            assert!(check(c, &flipped, &data).is_err(), "{c:?} flipped");
            assert!(
                check(c, &good[..good.len() - 1], &data).is_err(),
                "{c:?} no end"
            );
            let mut other = data.clone();
            other[10] ^= 1;
            assert!(check(c, &good, &other).is_err(), "{c:?} other content");
        }
    }
}
