//! Reader positions: a tailer may publish how far it has read in a small file of its own,
//! `<log>/readers/<name>.pos`, so that it can resume after a restart and, if the recorder is
//! configured to (`Config::hold_for_readers`), retention keeps the cold segments it has not
//! read yet, within a budget. The recorder only reads these files.
//!
//! A position proves where it is (contract 9): it holds the next sequence number *and* the
//! chained checksum of the record before it, so a log that no longer holds what the reader
//! read (records lost with the staging buffers at a power cut, then replaced by new ones with
//! the same sequence numbers) is detected when the reader resumes, never skipped in silence.
//! It also keeps older checkpoints, exponentially spaced (slot `k` is about `2^k` saves old),
//! from which a reader that asks for re-delivery starts again.
//!
//! File layout (128 bytes, little-endian, written in place with one `pwrite`; not synced):
//!
//! ```text
//! 0   magic "WALRPOS2"                      8
//! 8   saves so far                          u64
//! 16  checkpoints[7]: seq u64, crc u32, 0u32 (slot 0 = the position itself; seq 0 = empty)
//! 128-8 .. : CRC32C of bytes 0..120 (u32), 4 zero bytes
//! ```
//!
//! A torn or foreign file reads as no position (the reader starts from the first record:
//! a re-delivery, never a skip). A 16-byte file of the previous layout (sequence number only)
//! reads as a position without a checksum, which resumes without the check, with a warning.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The subdirectory of a log holding the readers' position files.
pub const READERS_DIR: &str = "readers";
const SUFFIX: &str = ".pos";
const MAGIC: &[u8; 8] = b"WALRPOS2";
/// Checkpoints kept, slot 0 being the position itself.
pub(crate) const CHECKPOINTS: usize = 7;
const SLOTS_OFFSET: usize = 16;
const SLOT_LEN: usize = 16;
const CRC_OFFSET: usize = SLOTS_OFFSET + CHECKPOINTS * SLOT_LEN;
const LEN: usize = CRC_OFFSET + 8;
const LEGACY_LEN: usize = 16;

/// Where a reader is: the next sequence number it reads, and the chained checksum of the
/// record before it (for the first record of a log, the checksum its segment header chains
/// from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The next sequence number to read: everything below it is read.
    pub next_seq: u64,
    /// The chained checksum of record `next_seq - 1`; `None` only in a file of the old
    /// layout, which did not keep it.
    pub prev_crc: Option<u32>,
}

/// A saved position: the newest checkpoint first, then older ones, newest to oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPosition {
    saves: u64,
    slots: [Option<(u64, u32)>; CHECKPOINTS],
    legacy: Option<u64>,
}

impl SavedPosition {
    /// The position itself.
    pub fn current(&self) -> Checkpoint {
        match (self.legacy, self.slots[0]) {
            (Some(seq), _) => Checkpoint {
                next_seq: seq,
                prev_crc: None,
            },
            (None, Some((seq, crc))) => Checkpoint {
                next_seq: seq,
                prev_crc: Some(crc),
            },
            (None, None) => unreachable!("a decoded position has slot 0"),
        }
    }

    /// The checkpoints older than the position, newest first, each below the one before.
    pub fn older(&self) -> impl Iterator<Item = Checkpoint> + '_ {
        let newest = self.current().next_seq;
        let mut below = newest;
        self.slots[1..]
            .iter()
            .flatten()
            .filter_map(move |&(seq, crc)| {
                if seq >= below {
                    return None;
                }
                below = seq;
                Some(Checkpoint {
                    next_seq: seq,
                    prev_crc: Some(crc),
                })
            })
    }

    fn empty() -> Self {
        SavedPosition {
            saves: 0,
            slots: [None; CHECKPOINTS],
            legacy: None,
        }
    }

    /// Records a new position; slot `k` takes slot `k - 1`'s value every `2^k` saves, so the
    /// slots stay exponentially spaced in time.
    fn push(&mut self, next_seq: u64, prev_crc: u32) {
        self.saves += 1;
        for k in (1..CHECKPOINTS).rev() {
            if self.saves % (1u64 << k) == 0 || self.slots[k].is_none() {
                self.slots[k] = self.slots[k - 1];
            }
        }
        self.slots[0] = Some((next_seq, prev_crc));
        self.legacy = None;
    }

    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.saves.to_le_bytes());
        for (k, slot) in self.slots.iter().enumerate() {
            let at = SLOTS_OFFSET + k * SLOT_LEN;
            if let Some((seq, crc)) = slot {
                assert!(*seq > 0, "sequence numbers start at 1");
                b[at..at + 8].copy_from_slice(&seq.to_le_bytes());
                b[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        if b.len() == LEGACY_LEN {
            let valid = b[12..] == [0; 4] && crc32c::crc32c(&b[..8]) == u32_at(8);
            let mut p = Self::empty();
            p.legacy = Some(u64_at(0));
            return valid.then_some(p);
        }
        if b.len() != LEN
            || &b[..8] != MAGIC
            || crc32c::crc32c(&b[..CRC_OFFSET]) != u32_at(CRC_OFFSET)
        {
            return None;
        }
        let mut p = Self::empty();
        p.saves = u64_at(8);
        for (k, slot) in p.slots.iter_mut().enumerate() {
            let at = SLOTS_OFFSET + k * SLOT_LEN;
            let seq = u64_at(at);
            *slot = (seq != 0).then(|| (seq, u32_at(at + 8)));
        }
        p.slots[0].is_some().then_some(p)
    }
}

/// One reader's position file (see the module docs).
pub struct ReaderPosition {
    file: File,
    path: PathBuf,
    name: String,
    saved: SavedPosition,
}

impl ReaderPosition {
    /// Opens (creating it and `readers/` if missing) the position file of reader `name`
    /// (letters, digits, `-` and `_`; at most 64).
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !valid {
            return Err(Error::Config(format!(
                "reader name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        let (file, path) = open_in_readers(dir, &format!("{name}{SUFFIX}"))?;
        let mut p = ReaderPosition {
            file,
            path,
            name: name.to_string(),
            saved: SavedPosition::empty(),
        };
        if let Some(saved) = p.load() {
            p.saved = saved;
        }
        Ok(p)
    }

    /// The saved position, if the file holds a valid one.
    pub fn load(&self) -> Option<SavedPosition> {
        let mut b = [0u8; LEN];
        let got = self.file.read_at(&mut b, 0).ok()?;
        SavedPosition::decode(&b[..got])
    }

    /// Saves the position `next_seq` (everything below it is read) with the chained checksum
    /// of the record before it. Not synced: after a power cut the reader may read again what
    /// it read last (never skip).
    pub fn store(&mut self, next_seq: u64, prev_crc: u32) -> Result<()> {
        if self.saved.slots[0] == Some((next_seq, prev_crc)) && self.saved.legacy.is_none() {
            return Ok(());
        }
        let older = self.saved.slots[0].map_or(0, |(seq, _)| seq);
        assert!(
            next_seq >= older || self.saved.saves == 0,
            "a reader's position only moves forward ({older} -> {next_seq})"
        );
        self.saved.push(next_seq, prev_crc);
        let bytes = self.saved.encode();
        self.file
            .write_all_at(&bytes, 0)
            .and_then(|()| self.file.set_len(LEN as u64))
            .map_err(|e| Error::io("write", &self.path, e))
    }

    /// Forgets every checkpoint at or after `seq` (they describe records the log no longer
    /// holds) and saves `next_seq` with its checksum as the position.
    pub(crate) fn restart_at(&mut self, next_seq: u64, prev_crc: u32) -> Result<()> {
        self.saved = SavedPosition::empty();
        self.store(next_seq, prev_crc)
    }

    /// The reader's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating it, and `readers/`, if missing) the file `name` in the readers directory
/// of the log in `dir`, for reading and writing, without truncating it.
pub(crate) fn open_in_readers(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let readers = dir.join(READERS_DIR);
    std::fs::create_dir_all(&readers).map_err(|e| Error::io("mkdir", &readers, e))?;
    let path = readers.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    Ok((file, path))
}

/// The lowest position among the readers of `dir` (`None`: no reader has one).
pub(crate) fn min_reader_position(dir: &Path) -> Option<u64> {
    let rd = std::fs::read_dir(dir.join(READERS_DIR)).ok()?;
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| SavedPosition::decode(&std::fs::read(e.path()).ok()?))
        .map(|p| p.current().next_seq)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_the_slowest_reader_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(min_reader_position(dir.path()), None);
        let mut a = ReaderPosition::open(dir.path(), "risk-engine").unwrap();
        let mut b = ReaderPosition::open(dir.path(), "audit_1").unwrap();
        assert_eq!(a.load(), None);
        a.store(5_000, 0xdead_beef).unwrap();
        b.store(1_200, 7).unwrap();
        let cur = a.load().unwrap().current();
        assert_eq!((cur.next_seq, cur.prev_crc), (5_000, Some(0xdead_beef)));
        assert_eq!(min_reader_position(dir.path()), Some(1_200));
        // A damaged file is no position, not a wrong one.
        std::fs::write(b.path(), [0xff; LEN]).unwrap();
        assert_eq!(min_reader_position(dir.path()), Some(5_000));
        assert!(ReaderPosition::open(dir.path(), "../evil").is_err());
        // Reopened, the position and its history are there.
        a.store(6_000, 1).unwrap();
        let again = ReaderPosition::open(dir.path(), "risk-engine").unwrap();
        let older: Vec<u64> = again.load().unwrap().older().map(|c| c.next_seq).collect();
        assert_eq!(older, vec![5_000]);
    }

    #[test]
    fn checkpoints_are_exponentially_spaced_and_decreasing() {
        let mut p = SavedPosition::empty();
        for i in 1..=1000u64 {
            p.push(i * 10, i as u32);
            let seqs: Vec<u64> = p.older().map(|c| c.next_seq).collect();
            assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
            assert!(seqs.iter().all(|&s| s < i * 10));
            // Every checkpoint's checksum is the one saved with it.
            assert!(p
                .older()
                .all(|c| c.prev_crc == Some((c.next_seq / 10) as u32)));
        }
        let seqs: Vec<u64> = p.older().map(|c| c.next_seq).collect();
        assert_eq!(seqs.len(), CHECKPOINTS - 1);
        // The oldest reaches back at least 2^(CHECKPOINTS-2) saves.
        let oldest = *seqs.last().unwrap();
        assert!(10_000 - oldest >= (1 << (CHECKPOINTS - 2)) * 10, "{seqs:?}");
        let decoded = SavedPosition::decode(&p.encode()).unwrap();
        assert_eq!(decoded, p);
    }

    #[test]
    fn an_old_layout_file_reads_as_a_position_without_a_checksum() {
        let mut b = [0u8; LEGACY_LEN];
        b[..8].copy_from_slice(&42u64.to_le_bytes());
        let crc = crc32c::crc32c(&b[..8]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        let p = SavedPosition::decode(&b).unwrap();
        assert_eq!(
            p.current(),
            Checkpoint {
                next_seq: 42,
                prev_crc: None
            }
        );
        b[0] ^= 1;
        assert_eq!(SavedPosition::decode(&b), None);
    }
}
