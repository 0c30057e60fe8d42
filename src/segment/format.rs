//! The on-disk layout of a segment: header, record frames, seal. Pure encoding and decoding;
//! no I/O here. Every field is a little-endian fixed-width integer; nothing host-endian or
//! `usize` reaches the disk. docs/FORMAT.md is the prose version of this module.
//!
//! ```text
//! header (64 bytes, offset 0)
//!  0        8        12       16                24                32       36       40
//!  +--------+--------+--------+-----------------+-----------------+--------+--------+
//!  | magic  |version | flags  |  segment index  |    first seq    |prev crc|reserved|
//!  +--------+--------+--------+-----------------+-----------------+--------+--------+
//!  40                48                                                60       64
//!  +-----------------+-------------------------------------------------+--------+
//!  |    capacity     |                 reserved (zero)                 |hdr crc |
//!  +-----------------+-------------------------------------------------+--------+
//!
//! record (16-byte frame header + payload + zero padding to a multiple of 8)
//!  0                 8        12       16
//!  +-----------------+--------+--------+------------------------+---------+
//!  |       seq       |  len   |  crc   |   payload (len bytes)  | padding |
//!  +-----------------+--------+--------+------------------------+---------+
//!  seq == 0 marks the end of the records of an unsealed segment.
//!  crc = CRC32C(seq ‖ len ‖ payload ‖ previous record's crc)
//!
//! seal (32 bytes, where the next record would start)
//!  0                 8                 16                24       28       32
//!  +-----------------+-----------------+-----------------+--------+--------+
//!  | marker u64::MAX |  record count   |   end offset    |last crc|seal crc|
//!  +-----------------+-----------------+-----------------+--------+--------+
//! ```

use crate::constants::MAX_RECORD_LEN;
use crate::error::Corruption;

/// First 8 bytes of every segment.
pub const MAGIC: [u8; 8] = *b"WALRSEG\x01";
/// Format version written by this build.
pub const VERSION: u32 = 1;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
pub const FLAGS_OFFSET: usize = VERSION_OFFSET + 4;
pub const INDEX_OFFSET: usize = FLAGS_OFFSET + 4;
pub const FIRST_SEQ_OFFSET: usize = INDEX_OFFSET + 8;
pub const PREV_CRC_OFFSET: usize = FIRST_SEQ_OFFSET + 8;
pub const HEADER_RESERVED1_OFFSET: usize = PREV_CRC_OFFSET + 4;
pub const CAPACITY_OFFSET: usize = HEADER_RESERVED1_OFFSET + 4;
pub const HEADER_RESERVED2_OFFSET: usize = CAPACITY_OFFSET + 8;
pub const HEADER_CRC_OFFSET: usize = 60;
/// Length of the segment header; records start here.
pub const HEADER_LEN: usize = HEADER_CRC_OFFSET + 4;

pub const REC_SEQ_OFFSET: usize = 0;
pub const REC_LEN_OFFSET: usize = REC_SEQ_OFFSET + 8;
pub const REC_CRC_OFFSET: usize = REC_LEN_OFFSET + 4;
/// Length of a record's frame header; the payload follows.
pub const RECORD_HEADER_LEN: usize = REC_CRC_OFFSET + 4;

/// The seq field value that marks a seal.
pub const SEAL_MARKER: u64 = u64::MAX;
pub const SEAL_COUNT_OFFSET: usize = 8;
pub const SEAL_END_OFFSET: usize = SEAL_COUNT_OFFSET + 8;
pub const SEAL_LAST_CRC_OFFSET: usize = SEAL_END_OFFSET + 8;
pub const SEAL_CRC_OFFSET: usize = SEAL_LAST_CRC_OFFSET + 4;
/// Length of the seal.
pub const SEAL_LEN: usize = SEAL_CRC_OFFSET + 4;

/// Records and the seal start at multiples of this.
pub const ALIGN: usize = 8;

const _: () = assert!(HEADER_LEN == 64 && RECORD_HEADER_LEN == 16 && SEAL_LEN == 32);
const _: () = assert!(HEADER_LEN % ALIGN == 0);

/// Bytes a record of `len` payload bytes occupies, frame header and padding included.
#[inline(always)]
pub const fn record_size(len: usize) -> usize {
    RECORD_HEADER_LEN + ((len + ALIGN - 1) & !(ALIGN - 1))
}

/// Records of `payload_len` bytes that one segment of `segment_size` bytes holds (the writer
/// keeps room for the seal and one alignment step after the last record).
pub fn records_per_segment(segment_size: u64, payload_len: usize) -> u64 {
    let room = (segment_size as usize).saturating_sub(HEADER_LEN + SEAL_LEN + ALIGN);
    (room / record_size(payload_len)) as u64
}

/// Largest payload one empty segment of `segment_size` bytes holds (seal space kept),
/// and never more than `MAX_RECORD_LEN`.
pub fn max_payload(segment_size: u64) -> usize {
    let room =
        (segment_size as usize).saturating_sub(HEADER_LEN + SEAL_LEN + ALIGN + RECORD_HEADER_LEN);
    room.min(crate::constants::MAX_RECORD_LEN)
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the segment in the log; also its file name.
    pub index: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// Checksum of the previous segment's last record (0 for the first segment of a log).
    pub prev_crc: u32,
    /// Size of the file as created (a persisted segment is truncated to its used length).
    pub capacity: u64,
}

impl SegmentHeader {
    /// Encodes the header, its checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, VERSION_OFFSET, VERSION);
        put_u32(&mut b, FLAGS_OFFSET, 0);
        put_u64(&mut b, INDEX_OFFSET, self.index);
        put_u64(&mut b, FIRST_SEQ_OFFSET, self.first_seq);
        put_u32(&mut b, PREV_CRC_OFFSET, self.prev_crc);
        put_u64(&mut b, CAPACITY_OFFSET, self.capacity);
        let crc = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
        put_u32(&mut b, HEADER_CRC_OFFSET, crc);
        b
    }

    /// Decodes and checks a header. The caller adds the file name and offset 0.
    pub fn decode(b: &[u8]) -> Result<Self, Corruption> {
        if b.len() < HEADER_LEN {
            if !b.is_empty() && !MAGIC.starts_with(&b[..b.len().min(8)]) {
                return Err(Corruption::BadMagic);
            }
            return Err(Corruption::TruncatedHeader);
        }
        if b.iter().all(|&x| x == 0) {
            return Err(Corruption::ZeroHeader);
        }
        if b[..8] != MAGIC {
            return Err(Corruption::BadMagic);
        }
        let version = get_u32(b, VERSION_OFFSET);
        if version != VERSION {
            return Err(Corruption::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&b[..HEADER_CRC_OFFSET]) != get_u32(b, HEADER_CRC_OFFSET) {
            return Err(Corruption::HeaderChecksum);
        }
        let header = SegmentHeader {
            index: get_u64(b, INDEX_OFFSET),
            first_seq: get_u64(b, FIRST_SEQ_OFFSET),
            prev_crc: get_u32(b, PREV_CRC_OFFSET),
            capacity: get_u64(b, CAPACITY_OFFSET),
        };
        if header.first_seq == 0 || header.first_seq == SEAL_MARKER {
            return Err(Corruption::BadHeader("first sequence number out of range"));
        }
        if header.capacity < (HEADER_LEN + SEAL_LEN) as u64 {
            return Err(Corruption::BadHeader(
                "capacity smaller than header and seal",
            ));
        }
        Ok(header)
    }
}

/// The capacity stated by the header of the segment file at `path`; `None` when the file has
/// no valid header (a prepared segment, a torn or foreign one).
pub(crate) fn capacity_of(path: &std::path::Path) -> crate::error::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| crate::error::Error::io("open", path, e))?;
    let mut head = [0u8; HEADER_LEN];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(SegmentHeader::decode(&head).ok().map(|h| h.capacity)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(crate::error::Error::io("read", path, e)),
    }
}

/// A decoded record frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub seq: u64,
    pub len: u32,
    pub crc: u32,
}

impl RecordHeader {
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> Self {
        RecordHeader {
            seq: get_u64(b, REC_SEQ_OFFSET),
            len: get_u32(b, REC_LEN_OFFSET),
            crc: get_u32(b, REC_CRC_OFFSET),
        }
    }

    /// Checks the length field against the limit; the caller checks it against the file.
    pub(crate) fn check_len(&self) -> Result<(), Corruption> {
        if self.len as usize > MAX_RECORD_LEN {
            return Err(Corruption::BadLength {
                len: u64::from(self.len),
            });
        }
        Ok(())
    }
}

/// Chained checksum of a record: the standard CRC32C of the sequence number (8 bytes), the
/// length (4 bytes), the payload, then the previous record's checksum (4 bytes), all
/// little-endian. The previous checksum comes last so that the writer's CPU can checksum a
/// payload without waiting for the previous record's checksum: only the last step is chained.
#[inline]
pub fn record_crc(prev_crc: u32, seq: u64, payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { record_crc_sse42(prev_crc, seq, payload) };
        }
    }
    record_crc_portable(prev_crc, seq, payload)
}

/// [`record_crc`] through the crc32c crate; the reference the fast path is tested against.
pub(crate) fn record_crc_portable(prev_crc: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut pre = [0u8; 12];
    pre[0..8].copy_from_slice(&seq.to_le_bytes());
    pre[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let c = crc32c::crc32c_append(crc32c::crc32c(&pre), payload);
    crc32c::crc32c_append(c, &prev_crc.to_le_bytes())
}

/// [`record_crc`] with the SSE4.2 `crc32` instruction, inlined into the writer: the crc32c
/// crate's general entry point costs several times more on 64-byte records (bench/append.rs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[inline]
unsafe fn record_crc_sse42(prev_crc: u32, seq: u64, payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut c = _mm_crc32_u64(0xffff_ffff, seq);
    c = u64::from(_mm_crc32_u32(c as u32, payload.len() as u32));
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !_mm_crc32_u32(c, prev_crc)
}

/// The decoded seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Number of records in the segment.
    pub count: u64,
    /// Offset just past the seal: the used length of the segment.
    pub end: u64,
    /// Checksum of the last record (the header's `prev_crc` when the segment is empty).
    pub last_crc: u32,
}

impl Seal {
    pub fn encode(&self) -> [u8; SEAL_LEN] {
        let mut b = [0u8; SEAL_LEN];
        put_u64(&mut b, 0, SEAL_MARKER);
        put_u64(&mut b, SEAL_COUNT_OFFSET, self.count);
        put_u64(&mut b, SEAL_END_OFFSET, self.end);
        put_u32(&mut b, SEAL_LAST_CRC_OFFSET, self.last_crc);
        let crc = crc32c::crc32c(&b[..SEAL_CRC_OFFSET]);
        put_u32(&mut b, SEAL_CRC_OFFSET, crc);
        b
    }

    pub fn decode(b: &[u8; SEAL_LEN]) -> Result<Self, Corruption> {
        if get_u64(b, 0) != SEAL_MARKER {
            return Err(Corruption::BadSeal("missing seal marker"));
        }
        if crc32c::crc32c(&b[..SEAL_CRC_OFFSET]) != get_u32(b, SEAL_CRC_OFFSET) {
            return Err(Corruption::BadSeal("seal checksum mismatch"));
        }
        Ok(Seal {
            count: get_u64(b, SEAL_COUNT_OFFSET),
            end: get_u64(b, SEAL_END_OFFSET),
            last_crc: get_u32(b, SEAL_LAST_CRC_OFFSET),
        })
    }
}

#[inline(always)]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline(always)]
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_a_flipped_bit() {
        let h = SegmentHeader {
            index: 7,
            first_seq: 1000,
            prev_crc: 0xdead_beef,
            capacity: 1 << 20,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[FIRST_SEQ_OFFSET] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(Corruption::HeaderChecksum));
    }

    #[test]
    fn record_size_pads_to_eight() {
        assert_eq!(record_size(0), 16);
        assert_eq!(record_size(1), 24);
        assert_eq!(record_size(8), 24);
        assert_eq!(record_size(64), 80);
    }

    #[test]
    fn fast_checksum_equals_the_portable_one() {
        for len in 0..200usize {
            let p: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let seq = 0x0123_4567_89ab_cdef ^ len as u64;
            assert_eq!(
                record_crc(77, seq, &p),
                record_crc_portable(77, seq, &p),
                "len {len}"
            );
        }
    }

    #[test]
    fn chained_crc_depends_on_previous_checksum() {
        assert_ne!(record_crc(1, 5, b"abc"), record_crc(2, 5, b"abc"));
        assert_ne!(record_crc(1, 5, b"abc"), record_crc(1, 6, b"abc"));
    }
}
