//! The maintainer's end of `cold.summary` (docs/FORMAT.md, "Summaries"): each freeze appends
//! its segment's entry; retention's deletes leave dead entries behind, so the file is
//! rewritten with the live ones once the dead outnumber them, and a log that runs for months
//! keeps an open that reads a file the size of its cold tier, not of its history.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::logdir::summary::{worth_compacting, write_index, SummaryIndex, SUMMARY_FILE};

/// The maintainer's end of `cold.summary`: entries are appended, never synced (a lost entry
/// costs the next open one decode).
pub(crate) struct SummaryLog {
    pub file: std::fs::File,
    /// Offset of the next entry.
    pub next: u64,
    /// Entries in the file, live and dead.
    pub entries: u64,
}

impl SummaryLog {
    /// Opens (creating it if missing) `dir/cold.summary`. Entries are appended at the next
    /// multiple of 8 (both entry lengths are multiples of 8): what a torn append left is
    /// skipped by the loader, which looks for entries 8 bytes apart.
    pub fn open(dir: &Path) -> Option<Self> {
        let path = dir.join(SUMMARY_FILE);
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .and_then(|f| Ok((f.metadata()?.len(), f)));
        match opened {
            Ok((len, file)) => Some(SummaryLog {
                file,
                next: len.div_ceil(8) * 8,
                entries: SummaryIndex::load(dir).entries_read() as u64,
            }),
            Err(e) => {
                log::warn!("{}: {e}; cold segments are decoded at open", path.display());
                None
            }
        }
    }
}

impl SummaryLog {
    /// Entries in the file, live and dead.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Rewrites `dir/cold.summary` with the entries of the `live` cold segments when dead
    /// entries outnumber them (the rule recovery uses); true if it did. No freeze may be
    /// publishing (its append would go to the replaced file). Blocking, off io_uring: it runs
    /// once per `live + 64` deletes or so, and costs one small write and two fsyncs (tmp,
    /// rename, directory) so that a crash leaves either file whole. A failure keeps the old
    /// file and is logged: summaries only make an open faster.
    pub fn compact_if_worth_it(&mut self, dir: &Path, live: &[u64]) -> bool {
        if !worth_compacting(self.entries() as usize, live.len()) {
            return false;
        }
        let index = SummaryIndex::load(dir);
        let entries: Vec<_> = live.iter().filter_map(|&i| index.entry(i)).collect();
        if let Err(e) = write_index(dir, &entries) {
            log::warn!("compacting cold.summary: {e}; the old file is kept");
            return false;
        }
        match Self::open(dir) {
            Some(reopened) => {
                assert_eq!(
                    reopened.entries(),
                    entries.len() as u64,
                    "the compacted file"
                );
                *self = reopened;
                true
            }
            None => false,
        }
    }
}
