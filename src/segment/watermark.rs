//! The durability watermark (contract 10): how far `durable_seq` had reached, kept on disk
//! with the drains at no extra flush, so that recovery can tell a torn tail (records never
//! reported durable) from the loss of records once reported durable.
//!
//! A Staged segment file is preallocated one page longer than its capacity: the page at
//! offset `capacity`, which the records never reach, holds two slots (redb's
//! `transaction_slots` pattern). Each drain rewrites the whole page with the slot of its
//! generation's parity updated to the `durable_seq` that the drains before it made durable,
//! linked before its fdatasync; the other slot keeps the previous value byte for byte, so a
//! write torn at any sector leaves at least one valid slot. Persist truncates the file to its
//! used length, which removes the page: a truncated file proves itself durable. Direct
//! segments carry the same page, written by the maintainer's timed syncs
//! (`maintainer::durability::direct_mark`).
//!
//! Slot (64 bytes, at offsets 0 and 512 of the page, in different sectors):
//!
//! ```text
//! 0  magic "WALRMARK"   8
//! 8  generation         u64   (the drain's number; the higher valid slot wins)
//! 16 segment index      u64   (of the file it is in)
//! 24 durable seq        u64   (every record up to it was durable when the drain began)
//! 32 reserved (zero)    28
//! 60 CRC32C of 0..60    u32
//! ```

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::constants::PAGE_SIZE;
use crate::error::{Error, Result};
use crate::io::AlignedBuf;

/// Prefix of the notes recovery leaves in the log's `quarantine/` when acknowledged records
/// are lost: `walctl verify` fails while one is there.
pub const LOST_NOTE_PREFIX: &str = "LOST-ACKNOWLEDGED-";

/// Bytes of the watermark page after a segment's capacity.
pub const WATERMARK_LEN: u64 = PAGE_SIZE;
const MAGIC: &[u8; 8] = b"WALRMARK";
const SLOT_LEN: usize = 64;
const SLOT_OFFSETS: [usize; 2] = [0, 512];
const CRC_AT: usize = 60;

/// A valid slot read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Every record up to here was reported durable.
    pub durable_seq: u64,
    /// The drain that wrote it.
    pub generation: u64,
}

/// The page a drain writes (the maintainer's, one per drain in flight).
pub(crate) struct WatermarkPage {
    page: AlignedBuf,
    generation: u64,
    index: Option<u64>,
}

impl WatermarkPage {
    pub(crate) fn new() -> Self {
        WatermarkPage {
            page: AlignedBuf::new(WATERMARK_LEN as usize),
            generation: 0,
            index: None,
        }
    }

    /// The page to write at `capacity` of segment `index`, recording `durable_seq`. A new
    /// segment starts from a zero page (its file's page is zeros).
    pub(crate) fn stamp(&mut self, index: u64, durable_seq: u64) -> &[u8] {
        if self.index != Some(index) {
            self.page.as_mut_slice().fill(0);
            self.index = Some(index);
        }
        self.generation += 1;
        let at = SLOT_OFFSETS[(self.generation % 2) as usize];
        let slot = &mut self.page.as_mut_slice()[at..at + SLOT_LEN];
        slot.fill(0);
        slot[..8].copy_from_slice(MAGIC);
        slot[8..16].copy_from_slice(&self.generation.to_le_bytes());
        slot[16..24].copy_from_slice(&index.to_le_bytes());
        slot[24..32].copy_from_slice(&durable_seq.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..CRC_AT]);
        slot[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        self.page.as_slice()
    }
}

fn decode(slot: &[u8], index: u64) -> Option<Watermark> {
    let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(slot[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    let valid = &slot[..8] == MAGIC
        && crc32c::crc32c(&slot[..CRC_AT]) == crc
        && u64_at(16) == index
        && slot[32..CRC_AT].iter().all(|&b| b == 0);
    valid.then(|| Watermark {
        durable_seq: u64_at(24),
        generation: u64_at(8),
    })
}

/// The watermark of segment `index` in `path`, whose header states `capacity`: the valid
/// slot of the higher generation, or `None` (no page: an older file, a persisted one, or a
/// segment no drain reached).
pub(crate) fn read_watermark(path: &Path, index: u64, capacity: u64) -> Result<Option<Watermark>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut page = vec![0u8; WATERMARK_LEN as usize];
    match file.read_exact_at(&mut page, capacity) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    }
    Ok(SLOT_OFFSETS
        .iter()
        .filter_map(|&at| decode(&page[at..at + SLOT_LEN], index))
        .max_by_key(|w| w.generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_valid_slot_wins_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let capacity = 8192u64;
        let mut page = WatermarkPage::new();
        let write = |bytes: &[u8]| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .unwrap();
            f.set_len(capacity + WATERMARK_LEN).unwrap();
            f.write_all_at(bytes, capacity).unwrap();
        };
        assert_eq!(read_watermark(&path, 3, capacity).ok().flatten(), None);
        write(page.stamp(3, 100));
        write(page.stamp(3, 250));
        let w = read_watermark(&path, 3, capacity).unwrap().unwrap();
        assert_eq!((w.durable_seq, w.generation), (250, 2));
        // The newer slot torn (one byte of it): the older one answers.
        let mut torn = page.page.as_slice().to_vec();
        torn[SLOT_OFFSETS[0] + 30] ^= 1;
        write(&torn);
        assert_eq!(
            read_watermark(&path, 3, capacity)
                .unwrap()
                .unwrap()
                .durable_seq,
            100
        );
        // Another segment's page never counts.
        assert_eq!(read_watermark(&path, 4, capacity).unwrap(), None);
        // A file without the page (older, or persisted): none.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(capacity)
            .unwrap();
        assert_eq!(read_watermark(&path, 3, capacity).unwrap(), None);
    }
}
