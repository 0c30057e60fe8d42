//! The on-disk layout of a segment: header, record frames, seal. Pure encoding and decoding;
//! no I/O here. Every field is a little-endian fixed-width integer; nothing host-endian or
//! `usize` reaches the disk. docs/FORMAT.md is the prose version of this module.
//!
//! Two versions share one header layout. Version 1 frames a record in 16 bytes; version 2
//! (a log that records time, the default) adds the record's time, nanoseconds since the Unix
//! epoch, under the chained checksum, keeps in the header the log's latest time before the
//! segment, and in the seal the segment's time range. Each segment states its own version;
//! [`Framing`] is what the readers and the writer need of it.
//!
//! ```text
//! header (64 bytes, offset 0)
//!  0        8        12       16                24                32       36       40
//!  +--------+--------+--------+-----------------+-----------------+--------+--------+
//!  | magic  |version | flags  |  segment index  |    first seq    |prev crc|reserved|
//!  +--------+--------+--------+-----------------+-----------------+--------+--------+
//!  40                48                56                60       64
//!  +-----------------+-----------------+--------+--------+
//!  |    capacity     | prev max time²  |reserved|hdr crc |
//!  +-----------------+-----------------+--------+--------+
//!
//! record, version 1 (16-byte frame header + payload + zero padding to a multiple of 8)
//!  0                 8        12       16
//!  +-----------------+--------+--------+------------------------+---------+
//!  |       seq       |  len   |  crc   |   payload (len bytes)  | padding |
//!  +-----------------+--------+--------+------------------------+---------+
//!  crc = CRC32C(seq ‖ len ‖ payload ‖ previous record's crc)
//!
//! record, version 2 (24-byte frame header)
//!  0                 8        12       16                24
//!  +-----------------+--------+--------+-----------------+-------------+---------+
//!  |       seq       |  len   |  crc   |     time ns     |   payload   | padding |
//!  +-----------------+--------+--------+-----------------+-------------+---------+
//!  crc = CRC32C(seq ‖ len ‖ time ‖ payload ‖ previous record's crc)
//!
//!  seq == 0 marks the end of the records of an unsealed segment.
//!
//! seal, version 1 (32 bytes, where the next record would start)
//!  0                 8                 16                24       28       32
//!  +-----------------+-----------------+-----------------+--------+--------+
//!  | marker u64::MAX |  record count   |   end offset    |last crc|seal crc|
//!  +-----------------+-----------------+-----------------+--------+--------+
//!
//! seal, version 2 (64 bytes): version 1's first 28 bytes, then
//!  28       32                40                48                56       60       64
//!  +--------+-----------------+-----------------+-----------------+--------+--------+
//!  |reserved|   first time    |    last time    |    max time     |reserved|seal crc|
//!  +--------+-----------------+-----------------+-----------------+--------+--------+
//!  max time: the greatest record time in the log up to the seal (the header's prev max
//!  time and this segment's records), so that it never decreases from segment to segment.
//! ² version 2 only; zero in version 1.
//! ```

use crate::constants::MAX_RECORD_LEN;
use crate::error::Corruption;

/// First 8 bytes of every segment.
pub const MAGIC: [u8; 8] = *b"WALRSEG\x01";
/// Format version of a segment whose records carry no time.
pub const VERSION_PLAIN: u32 = 1;
/// Format version of a segment whose records carry their time.
pub const VERSION_TIMED: u32 = 2;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
pub const FLAGS_OFFSET: usize = VERSION_OFFSET + 4;
pub const INDEX_OFFSET: usize = FLAGS_OFFSET + 4;
pub const FIRST_SEQ_OFFSET: usize = INDEX_OFFSET + 8;
pub const PREV_CRC_OFFSET: usize = FIRST_SEQ_OFFSET + 8;
pub const HEADER_RESERVED1_OFFSET: usize = PREV_CRC_OFFSET + 4;
pub const CAPACITY_OFFSET: usize = HEADER_RESERVED1_OFFSET + 4;
pub const PREV_MAX_TIME_OFFSET: usize = CAPACITY_OFFSET + 8;
pub const HEADER_RESERVED2_OFFSET: usize = PREV_MAX_TIME_OFFSET + 8;
pub const HEADER_CRC_OFFSET: usize = 60;
/// Length of the segment header; records start here.
pub const HEADER_LEN: usize = HEADER_CRC_OFFSET + 4;

pub const REC_SEQ_OFFSET: usize = 0;
pub const REC_LEN_OFFSET: usize = REC_SEQ_OFFSET + 8;
pub const REC_CRC_OFFSET: usize = REC_LEN_OFFSET + 4;
/// Offset of a version 2 record's time.
pub const REC_TIME_OFFSET: usize = REC_CRC_OFFSET + 4;
/// The longest frame header (version 2); a version 1 header is its first 16 bytes.
pub const MAX_RECORD_HEADER_LEN: usize = REC_TIME_OFFSET + 8;

/// The seq field value that marks a seal.
pub const SEAL_MARKER: u64 = u64::MAX;
pub const SEAL_COUNT_OFFSET: usize = 8;
pub const SEAL_END_OFFSET: usize = SEAL_COUNT_OFFSET + 8;
pub const SEAL_LAST_CRC_OFFSET: usize = SEAL_END_OFFSET + 8;
pub const SEAL_FIRST_TIME_OFFSET: usize = SEAL_LAST_CRC_OFFSET + 8;
pub const SEAL_LAST_TIME_OFFSET: usize = SEAL_FIRST_TIME_OFFSET + 8;
pub const SEAL_MAX_TIME_OFFSET: usize = SEAL_LAST_TIME_OFFSET + 8;
/// The longest seal (version 2).
pub const MAX_SEAL_LEN: usize = 64;

/// Records and the seal start at multiples of this.
pub const ALIGN: usize = 8;

const _: () = assert!(HEADER_LEN == 64 && MAX_RECORD_HEADER_LEN == 24);
const _: () = assert!(SEAL_MAX_TIME_OFFSET + 8 + 4 + 4 == MAX_SEAL_LEN);
const _: () = assert!(HEADER_LEN % ALIGN == 0 && MAX_SEAL_LEN % ALIGN == 0);

/// How a segment frames its records: whether they carry time (version 2) or not (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Version 1: 16-byte frame headers, no time.
    Plain,
    /// Version 2: 24-byte frame headers with the record's time, a seal with the time range.
    Timed,
}

impl Framing {
    /// The framing of format `version`, if this build reads it.
    pub const fn of_version(version: u32) -> Option<Self> {
        match version {
            VERSION_PLAIN => Some(Framing::Plain),
            VERSION_TIMED => Some(Framing::Timed),
            _ => None,
        }
    }

    /// The header's version field.
    pub const fn version(self) -> u32 {
        match self {
            Framing::Plain => VERSION_PLAIN,
            Framing::Timed => VERSION_TIMED,
        }
    }

    /// Whether records carry time.
    pub const fn timed(self) -> bool {
        matches!(self, Framing::Timed)
    }

    /// Length of a record's frame header; the payload follows it.
    #[inline(always)]
    pub const fn record_header_len(self) -> usize {
        match self {
            Framing::Plain => 16,
            Framing::Timed => MAX_RECORD_HEADER_LEN,
        }
    }

    /// Length of the seal.
    #[inline(always)]
    pub const fn seal_len(self) -> usize {
        match self {
            Framing::Plain => 32,
            Framing::Timed => MAX_SEAL_LEN,
        }
    }

    /// Bytes a record of `len` payload bytes occupies, frame header and padding included.
    #[inline(always)]
    pub const fn record_size(self, len: usize) -> usize {
        self.record_header_len() + ((len + ALIGN - 1) & !(ALIGN - 1))
    }

    /// Records of `payload_len` bytes that one segment of `segment_size` bytes holds (the
    /// writer keeps room for the seal and one alignment step after the last record).
    pub fn records_per_segment(self, segment_size: u64, payload_len: usize) -> u64 {
        let room = (segment_size as usize).saturating_sub(HEADER_LEN + self.seal_len() + ALIGN);
        (room / self.record_size(payload_len)) as u64
    }

    /// Largest payload one empty segment of `segment_size` bytes holds (seal space kept),
    /// and never more than `MAX_RECORD_LEN`.
    pub fn max_payload(self, segment_size: u64) -> usize {
        let fixed = HEADER_LEN + self.seal_len() + ALIGN + self.record_header_len();
        (segment_size as usize)
            .saturating_sub(fixed)
            .min(crate::constants::MAX_RECORD_LEN)
    }
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
    /// How its records are framed (its version).
    pub framing: Framing,
    /// Version 2: the greatest record time in the log before this segment (0 for none);
    /// the seal's max time continues it. Always 0 in version 1.
    pub prev_max_time: u64,
}

impl SegmentHeader {
    /// Encodes the header, its checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        put_u32(&mut b, VERSION_OFFSET, self.framing.version());
        put_u32(&mut b, FLAGS_OFFSET, 0);
        put_u64(&mut b, INDEX_OFFSET, self.index);
        put_u64(&mut b, FIRST_SEQ_OFFSET, self.first_seq);
        put_u32(&mut b, PREV_CRC_OFFSET, self.prev_crc);
        put_u64(&mut b, CAPACITY_OFFSET, self.capacity);
        if self.framing.timed() {
            put_u64(&mut b, PREV_MAX_TIME_OFFSET, self.prev_max_time);
        }
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
        let Some(framing) = Framing::of_version(version) else {
            return Err(Corruption::UnsupportedVersion(version));
        };
        if crc32c::crc32c(&b[..HEADER_CRC_OFFSET]) != get_u32(b, HEADER_CRC_OFFSET) {
            return Err(Corruption::HeaderChecksum);
        }
        let header = SegmentHeader {
            index: get_u64(b, INDEX_OFFSET),
            first_seq: get_u64(b, FIRST_SEQ_OFFSET),
            prev_crc: get_u32(b, PREV_CRC_OFFSET),
            capacity: get_u64(b, CAPACITY_OFFSET),
            framing,
            prev_max_time: match framing {
                Framing::Timed => get_u64(b, PREV_MAX_TIME_OFFSET),
                Framing::Plain => 0,
            },
        };
        if header.first_seq == 0 || header.first_seq == SEAL_MARKER {
            return Err(Corruption::BadHeader("first sequence number out of range"));
        }
        if header.capacity < (HEADER_LEN + framing.seal_len()) as u64 {
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
    /// The record's time (0 in version 1).
    pub time: u64,
}

impl RecordHeader {
    /// Decodes the first `framing.record_header_len()` bytes of `b`.
    pub fn decode(b: &[u8], framing: Framing) -> Self {
        RecordHeader {
            seq: get_u64(b, REC_SEQ_OFFSET),
            len: get_u32(b, REC_LEN_OFFSET),
            crc: get_u32(b, REC_CRC_OFFSET),
            time: match framing {
                Framing::Timed => get_u64(b, REC_TIME_OFFSET),
                Framing::Plain => 0,
            },
        }
    }

    /// Whether this is the all-zero frame that ends an unsealed segment's records.
    pub fn is_clean_end(&self) -> bool {
        self.seq == 0 && self.len == 0 && self.crc == 0 && self.time == 0
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
/// length (4 bytes), in version 2 the time (8 bytes), the payload, then the previous record's
/// checksum (4 bytes), all little-endian. The previous checksum comes last so that the
/// writer's CPU can checksum a payload without waiting for the previous record's checksum:
/// only the last step is chained. `time` is `None` for version 1.
#[inline]
pub fn record_crc(prev_crc: u32, seq: u64, time: Option<u64>, payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { record_crc_sse42(prev_crc, seq, time, payload) };
        }
    }
    record_crc_portable(prev_crc, seq, time, payload)
}

/// [`record_crc`] through the crc32c crate; the reference the fast path is tested against.
pub(crate) fn record_crc_portable(
    prev_crc: u32,
    seq: u64,
    time: Option<u64>,
    payload: &[u8],
) -> u32 {
    let mut pre = [0u8; 20];
    pre[0..8].copy_from_slice(&seq.to_le_bytes());
    pre[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let pre_len = match time {
        Some(t) => {
            pre[12..20].copy_from_slice(&t.to_le_bytes());
            20
        }
        None => 12,
    };
    let c = crc32c::crc32c_append(crc32c::crc32c(&pre[..pre_len]), payload);
    crc32c::crc32c_append(c, &prev_crc.to_le_bytes())
}

/// [`record_crc`] with the SSE4.2 `crc32` instruction, inlined into the writer: the crc32c
/// crate's general entry point costs several times more on 64-byte records (bench/append.rs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
#[inline]
unsafe fn record_crc_sse42(prev_crc: u32, seq: u64, time: Option<u64>, payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut c = _mm_crc32_u64(0xffff_ffff, seq);
    c = u64::from(_mm_crc32_u32(c as u32, payload.len() as u32));
    if let Some(t) = time {
        c = _mm_crc32_u64(c, t);
    }
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

/// The time range of a version 2 segment's records, from its seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Time of the first record.
    pub first: u64,
    /// Time of the last record.
    pub last: u64,
    /// The greatest time in the log up to the last record (see the module docs).
    pub max: u64,
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
    /// Version 2: the records' time range (all zero when the segment is empty: the max
    /// time then repeats the header's). `None` in version 1.
    pub times: Option<TimeRange>,
}

impl Seal {
    /// The seal's length in this framing.
    pub fn framing(&self) -> Framing {
        match self.times {
            Some(_) => Framing::Timed,
            None => Framing::Plain,
        }
    }

    /// Encodes the seal; its length is its framing's `seal_len()` (the rest of the array is
    /// zero).
    pub fn encode(&self) -> [u8; MAX_SEAL_LEN] {
        let len = self.framing().seal_len();
        let mut b = [0u8; MAX_SEAL_LEN];
        put_u64(&mut b, 0, SEAL_MARKER);
        put_u64(&mut b, SEAL_COUNT_OFFSET, self.count);
        put_u64(&mut b, SEAL_END_OFFSET, self.end);
        put_u32(&mut b, SEAL_LAST_CRC_OFFSET, self.last_crc);
        if let Some(t) = self.times {
            put_u64(&mut b, SEAL_FIRST_TIME_OFFSET, t.first);
            put_u64(&mut b, SEAL_LAST_TIME_OFFSET, t.last);
            put_u64(&mut b, SEAL_MAX_TIME_OFFSET, t.max);
        }
        let crc = crc32c::crc32c(&b[..len - 4]);
        put_u32(&mut b, len - 4, crc);
        b
    }

    /// Decodes the first `framing.seal_len()` bytes of `b`.
    pub fn decode(b: &[u8], framing: Framing) -> Result<Self, Corruption> {
        let len = framing.seal_len();
        if b.len() < len || get_u64(b, 0) != SEAL_MARKER {
            return Err(Corruption::BadSeal("missing seal marker"));
        }
        if crc32c::crc32c(&b[..len - 4]) != get_u32(b, len - 4) {
            return Err(Corruption::BadSeal("seal checksum mismatch"));
        }
        Ok(Seal {
            count: get_u64(b, SEAL_COUNT_OFFSET),
            end: get_u64(b, SEAL_END_OFFSET),
            last_crc: get_u32(b, SEAL_LAST_CRC_OFFSET),
            times: framing.timed().then(|| TimeRange {
                first: get_u64(b, SEAL_FIRST_TIME_OFFSET),
                last: get_u64(b, SEAL_LAST_TIME_OFFSET),
                max: get_u64(b, SEAL_MAX_TIME_OFFSET),
            }),
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

    fn header(framing: Framing) -> SegmentHeader {
        SegmentHeader {
            index: 7,
            first_seq: 1000,
            prev_crc: 0xdead_beef,
            capacity: 1 << 20,
            framing,
            prev_max_time: if framing.timed() {
                1_700_000_000_000_000_000
            } else {
                0
            },
        }
    }

    #[test]
    fn header_round_trips_and_detects_a_flipped_bit() {
        for framing in [Framing::Plain, Framing::Timed] {
            let h = header(framing);
            let mut b = h.encode();
            assert_eq!(SegmentHeader::decode(&b), Ok(h));
            assert_eq!(get_u32(&b, VERSION_OFFSET), framing.version());
            b[FIRST_SEQ_OFFSET] ^= 1;
            assert_eq!(SegmentHeader::decode(&b), Err(Corruption::HeaderChecksum));
        }
        let mut b = header(Framing::Timed).encode();
        b[PREV_MAX_TIME_OFFSET] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(Corruption::HeaderChecksum));
    }

    #[test]
    fn record_size_pads_to_eight() {
        assert_eq!(Framing::Plain.record_size(0), 16);
        assert_eq!(Framing::Plain.record_size(1), 24);
        assert_eq!(Framing::Plain.record_size(8), 24);
        assert_eq!(Framing::Plain.record_size(64), 80);
        assert_eq!(Framing::Timed.record_size(0), 24);
        assert_eq!(Framing::Timed.record_size(64), 88);
    }

    #[test]
    fn seals_round_trip_in_both_versions_and_a_flipped_bit_voids_them() {
        let plain = Seal {
            count: 3,
            end: 4096,
            last_crc: 9,
            times: None,
        };
        let timed = Seal {
            times: Some(TimeRange {
                first: 5,
                last: 4,
                max: 6,
            }),
            ..plain
        };
        for seal in [plain, timed] {
            let framing = seal.framing();
            let b = seal.encode();
            assert_eq!(Seal::decode(&b, framing), Ok(seal));
            for i in 0..framing.seal_len() {
                let mut bad = b;
                bad[i] ^= 4;
                assert!(Seal::decode(&bad, framing).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn fast_checksum_equals_the_portable_one() {
        for len in 0..200usize {
            let p: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let seq = 0x0123_4567_89ab_cdef ^ len as u64;
            for time in [None, Some(0), Some(1_733_000_000_123_456_789 ^ len as u64)] {
                assert_eq!(
                    record_crc(77, seq, time, &p),
                    record_crc_portable(77, seq, time, &p),
                    "len {len} time {time:?}"
                );
            }
        }
    }

    #[test]
    fn chained_crc_depends_on_previous_checksum_and_time() {
        assert_ne!(
            record_crc(1, 5, None, b"abc"),
            record_crc(2, 5, None, b"abc")
        );
        assert_ne!(
            record_crc(1, 5, None, b"abc"),
            record_crc(1, 6, None, b"abc")
        );
        assert_ne!(
            record_crc(1, 5, Some(1), b"abc"),
            record_crc(1, 5, Some(2), b"abc")
        );
        assert_ne!(
            record_crc(1, 5, Some(0), b"abc"),
            record_crc(1, 5, None, b"abc")
        );
    }
}
