//! Segment summaries: what the chain needs to know of a sealed segment (its header's first
//! sequence number and previous checksum, its seal's count and last checksum) without reading
//! its records. They let recovery walk the chain from segment to segment in constant time per
//! segment (docs/FORMAT.md, "Summaries").
//!
//! - A sealed hot segment summarizes itself: its header and the seal at its end (a persisted
//!   segment is truncated to its used length).
//! - Cold segments are summarized in `cold.summary`, beside them: fixed-size entries, each
//!   with its own checksum, appended by the maintainer after each freeze (never synced: a
//!   lost or torn entry only costs a decode), rewritten whole (tmp, fsync, rename, directory
//!   fsync) by recovery when it had to decode a segment, and by recovery or the maintainer
//!   when the file holds mostly entries of deleted segments. An entry names the file it describes by index, length, inode and
//!   modification time; one that does not match the file is ignored (the file is decoded
//!   instead), and the last valid entry of an index wins.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::listing::{SegmentEntry, Tier};
use crate::error::{Error, Result};
use crate::segment::format::{Framing, Seal, SegmentHeader, TimeRange, HEADER_LEN, MAX_SEAL_LEN};

/// The file of cold summaries in a log directory.
pub const SUMMARY_FILE: &str = "cold.summary";
/// Its temporary name while recovery rewrites it.
pub const SUMMARY_TMP: &str = "cold.summary.tmp";
/// Bytes per entry of a version 1 segment (written by earlier builds too).
pub const ENTRY_LEN: usize = 80;
/// Bytes per entry of a version 2 segment: an 80-byte entry's fields, then its times.
pub const TIMED_ENTRY_LEN: usize = 112;
const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"WSM1");
const TIMED_ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"WSM2");

/// What identifies one version of a file: a file replaced (restored, copied, rewritten) has
/// another inode or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            len: meta.len(),
            ino: meta.ino(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }
}

/// What the chain needs of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Its index.
    pub index: u64,
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Checksum its first record chains from.
    pub prev_crc: u32,
    /// Records in it.
    pub count: u64,
    /// Checksum of its last record (`prev_crc` when empty).
    pub last_crc: u32,
    /// Length of the `.wal` bytes (the seal's `end`).
    pub raw_len: u64,
    /// Version 2: the header's `prev_max_time` and the seal's time range; `None` in
    /// version 1.
    pub times: Option<(u64, TimeRange)>,
}

impl SegmentSummary {
    /// From a decoded header and seal.
    pub fn new(h: &SegmentHeader, seal: &Seal) -> Self {
        SegmentSummary {
            index: h.index,
            first_seq: h.first_seq,
            prev_crc: h.prev_crc,
            count: seal.count,
            last_crc: seal.last_crc,
            raw_len: seal.end,
            times: seal.times.map(|t| (h.prev_max_time, t)),
        }
    }

    /// How the segment frames its records.
    pub fn framing(&self) -> Framing {
        match self.times {
            Some(_) => Framing::Timed,
            None => Framing::Plain,
        }
    }

    /// The header these fields come from (capacity unknown: 0).
    pub(crate) fn header(&self) -> SegmentHeader {
        SegmentHeader {
            index: self.index,
            first_seq: self.first_seq,
            prev_crc: self.prev_crc,
            capacity: 0,
            framing: self.framing(),
            prev_max_time: self.times.map_or(0, |(prev, _)| prev),
        }
    }

    /// Sequence number after its last record.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.count
    }

    /// The entry of `cold.summary` for the cold file with `stamp`: the array's first
    /// [`Self::entry_len`] bytes.
    pub fn encode(&self, stamp: FileStamp) -> [u8; TIMED_ENTRY_LEN] {
        let mut b = [0u8; TIMED_ENTRY_LEN];
        let len = self.entry_len();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        let magic = match self.times {
            Some(_) => TIMED_ENTRY_MAGIC,
            None => ENTRY_MAGIC,
        };
        put(&magic.to_le_bytes());
        put(&self.prev_crc.to_le_bytes());
        put(&self.index.to_le_bytes());
        put(&self.first_seq.to_le_bytes());
        put(&self.count.to_le_bytes());
        put(&self.raw_len.to_le_bytes());
        put(&self.last_crc.to_le_bytes());
        put(&[0u8; 4]);
        put(&stamp.len.to_le_bytes());
        put(&stamp.ino.to_le_bytes());
        put(&stamp.mtime_ns.to_le_bytes());
        if let Some((prev, t)) = self.times {
            for v in [prev, t.first, t.last, t.max] {
                put(&v.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[..len - 4]);
        b[len - 4..len].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Bytes of this segment's entry.
    pub fn entry_len(&self) -> usize {
        match self.times {
            Some(_) => TIMED_ENTRY_LEN,
            None => ENTRY_LEN,
        }
    }

    /// Decodes the entry at the start of `b`; `None` for anything that is not a whole,
    /// intact entry.
    pub fn decode(b: &[u8]) -> Option<(Self, FileStamp)> {
        if b.len() < 4 {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let len = match u32_at(0) {
            ENTRY_MAGIC => ENTRY_LEN,
            TIMED_ENTRY_MAGIC => TIMED_ENTRY_LEN,
            _ => return None,
        };
        if b.len() < len || crc32c::crc32c(&b[..len - 4]) != u32_at(len - 4) {
            return None;
        }
        let summary = SegmentSummary {
            prev_crc: u32_at(4),
            index: u64_at(8),
            first_seq: u64_at(16),
            count: u64_at(24),
            raw_len: u64_at(32),
            last_crc: u32_at(40),
            times: (len == TIMED_ENTRY_LEN).then(|| {
                let t = TimeRange {
                    first: u64_at(80),
                    last: u64_at(88),
                    max: u64_at(96),
                };
                (u64_at(72), t)
            }),
        };
        let stamp = FileStamp {
            len: u64_at(48),
            ino: u64_at(56),
            mtime_ns: u64_at(64) as i64,
        };
        Some((summary, stamp))
    }
}

/// The summary of a sealed hot segment, from its header and the seal at its end: `None` when
/// the file does not end in a valid seal matching its length (unsealed, or sealed and not yet
/// truncated, or damaged: then it must be read).
pub(crate) fn hot_summary(entry: &SegmentEntry) -> Result<Option<SegmentSummary>> {
    if entry.tier != Tier::Hot || entry.file_len < HEADER_LEN as u64 {
        return Ok(None);
    }
    let f = File::open(&entry.path).map_err(|e| Error::io("open", &entry.path, e))?;
    let mut head = [0u8; HEADER_LEN];
    let read = |buf: &mut [u8], at: u64| match f.read_exact_at(buf, at) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("read", &entry.path, e)),
    };
    if !read(&mut head, 0)? {
        return Ok(None);
    }
    let Ok(h) = SegmentHeader::decode(&head) else {
        return Ok(None);
    };
    let seal_len = h.framing.seal_len();
    let mut tail = [0u8; MAX_SEAL_LEN];
    if entry.file_len < (HEADER_LEN + seal_len) as u64
        || !read(&mut tail[..seal_len], entry.file_len - seal_len as u64)?
    {
        return Ok(None);
    }
    let Ok(seal) = Seal::decode(&tail, h.framing) else {
        return Ok(None);
    };
    let fits = h.index == entry.index && seal.end == entry.file_len && seal.end < h.capacity;
    Ok(fits.then(|| SegmentSummary::new(&h, &seal)))
}

/// The entries of a directory's `cold.summary`.
#[derive(Debug, Default, Clone)]
pub struct SummaryIndex {
    entries: HashMap<u64, (SegmentSummary, FileStamp)>,
    /// Entries read (all versions, valid ones).
    read: usize,
}

impl SummaryIndex {
    /// Reads `dir/cold.summary`; a missing or unreadable file is an empty index (a summary
    /// is never needed, only faster).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(SUMMARY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                log::warn!("{}: {e}; segments are decoded instead", path.display());
                return Self::default();
            }
        };
        let mut index = Self::default();
        // At most one entry per ENTRY_LEN bytes (the shorter kind): no rehash while loading.
        index.entries.reserve(bytes.len() / ENTRY_LEN);
        // Entries of both lengths (multiples of 8) follow one another; past anything that
        // is not an intact entry (a torn append), look for the next one 8 bytes on.
        let mut at = 0;
        while at < bytes.len() {
            match SegmentSummary::decode(&bytes[at..]) {
                Some((s, stamp)) => {
                    at += s.entry_len();
                    index.entries.insert(s.index, (s, stamp));
                    index.read += 1;
                }
                None => at += 8,
            }
        }
        index
    }

    /// The summary of a cold segment, if an entry describes this very file.
    pub fn get(&self, entry: &SegmentEntry) -> Option<SegmentSummary> {
        let (s, stamp) = self.entries.get(&entry.index)?;
        (entry.tier == Tier::Cold && *stamp == entry.stamp).then_some(*s)
    }

    /// The entry of segment `index`, whatever file it describes.
    pub fn entry(&self, index: u64) -> Option<(SegmentSummary, FileStamp)> {
        self.entries.get(&index).copied()
    }

    /// Valid entries read, superseded ones included.
    pub(crate) fn entries_read(&self) -> usize {
        self.read
    }
}

/// Whether a summary file of `entries` entries (of any version) is worth rewriting for
/// `live` cold segments: dead entries outnumber the live ones by a margin.
pub(crate) fn worth_compacting(entries: usize, live: usize) -> bool {
    entries > 2 * live + 64
}

/// Writes `dir/cold.summary` with exactly `entries`, atomically: tmp, fsync, rename,
/// directory fsync.
pub(crate) fn write_index(dir: &Path, entries: &[(SegmentSummary, FileStamp)]) -> Result<()> {
    let tmp = dir.join(SUMMARY_TMP);
    let mut bytes = Vec::with_capacity(entries.len() * TIMED_ENTRY_LEN);
    for (s, stamp) in entries {
        bytes.extend_from_slice(&s.encode(*stamp)[..s.entry_len()]);
    }
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    drop(f);
    let path = dir.join(SUMMARY_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    crate::segment::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_any_damage_voids_it() {
        let s = SegmentSummary {
            index: 7,
            first_seq: 1001,
            prev_crc: 0xdead_beef,
            count: 817,
            last_crc: 0x1234_5678,
            raw_len: 65_456,
            times: None,
        };
        let stamp = FileStamp {
            len: 20_000,
            ino: 99,
            mtime_ns: 1_700_000_000_123_456_789,
        };
        let timed = SegmentSummary {
            times: Some((
                3,
                TimeRange {
                    first: 10,
                    last: 9,
                    max: 11,
                },
            )),
            ..s
        };
        for s in [s, timed] {
            let len = s.entry_len();
            let b = s.encode(stamp);
            assert_eq!(SegmentSummary::decode(&b[..len]), Some((s, stamp)));
            for i in 0..len {
                let mut bad = b;
                bad[i] ^= 0x10;
                assert_eq!(
                    SegmentSummary::decode(&bad[..len]),
                    None,
                    "byte {i} flipped"
                );
            }
            assert_eq!(SegmentSummary::decode(&b[..len - 1]), None);
        }
    }

    #[test]
    fn entries_of_both_versions_and_a_torn_one_load_from_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = FileStamp::default();
        let plain = SegmentSummary {
            index: 1,
            first_seq: 1,
            prev_crc: 0,
            count: 5,
            last_crc: 7,
            raw_len: 500,
            times: None,
        };
        let timed = SegmentSummary {
            index: 2,
            first_seq: 6,
            times: Some((0, TimeRange::default())),
            ..plain
        };
        let third = SegmentSummary { index: 3, ..plain };
        let mut bytes = plain.encode(stamp)[..ENTRY_LEN].to_vec();
        bytes.extend_from_slice(&timed.encode(stamp)[..40]); // torn
        bytes.extend_from_slice(&timed.encode(stamp)[..TIMED_ENTRY_LEN]);
        bytes.extend_from_slice(&third.encode(stamp)[..ENTRY_LEN]);
        std::fs::write(dir.path().join(SUMMARY_FILE), bytes).unwrap();
        let index = SummaryIndex::load(dir.path());
        assert_eq!(index.entries_read(), 3);
        for s in [plain, timed, third] {
            assert_eq!(index.entry(s.index), Some((s, stamp)));
        }
    }
}
