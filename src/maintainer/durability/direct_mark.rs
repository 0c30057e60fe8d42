//! The durability watermark of Direct mode (contract 10; `segment::watermark`). A Direct
//! segment file, like a Staged one, is one page longer than its capacity, and the page there
//! holds the watermark's two slots. The timer's sync covers only the completed pages of the
//! mapping (a wider one would write-protect the page the writer is filling), so the watermark
//! page needs a ranged sync of its own: a second device flush. It is therefore written with
//! every [`MARK_EVERY`]th sync while the writer is busy, with the first sync of each segment,
//! and with every sync of an idle writer: the watermark trails `durable_seq` by at most that
//! many syncs (about 8 ms at the default interval), and records acknowledged within that
//! window before a crash, if damaged, read as a torn tail.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::segment::format::capacity_of;
use crate::segment::watermark::{WatermarkPage, WATERMARK_LEN};

/// A busy writer's syncs carry a watermark once per this many.
pub(crate) const MARK_EVERY: u32 = 8;

pub(crate) struct DirectMark {
    page: WatermarkPage,
    /// The active file's segment and, if the file carries a watermark page, its capacity
    /// (files of older builds do not, and are never extended).
    file: Option<(u64, Option<u64>)>,
    /// The segment the last watermark went to, and the value it recorded.
    marked: Option<(u64, u64)>,
    /// Syncs since the last watermark.
    syncs_since: u32,
}

impl DirectMark {
    pub(crate) fn new() -> Self {
        DirectMark {
            page: WatermarkPage::new(),
            file: None,
            marked: None,
            syncs_since: 0,
        }
    }

    /// The active file changed to segment `index` at `path`.
    pub(crate) fn opened(&mut self, index: u64, file: &File, path: &Path) -> Result<()> {
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .size();
        let capacity = capacity_of(path)?.filter(|&c| len >= c + WATERMARK_LEN);
        self.file = Some((index, capacity));
        Ok(())
    }

    /// The watermark this sync of segment `index` carries, if one is due: its offset in the
    /// file and the page, which must stay untouched until the sync completes. `durable` is
    /// what earlier syncs made durable; `idle`: the writer appended nothing for an interval.
    pub(crate) fn due(&mut self, index: u64, durable: u64, idle: bool) -> Option<(u64, &[u8])> {
        let Some((i, Some(capacity))) = self.file else {
            return None;
        };
        assert_eq!(i, index, "the watermark goes to the file being synced");
        let new_segment = self.marked.map(|(s, _)| s) != Some(index);
        let moved = self.marked.map_or(true, |(_, v)| durable > v);
        self.syncs_since += 1;
        if durable == 0 || !(new_segment || moved && (idle || self.syncs_since >= MARK_EVERY)) {
            return None;
        }
        if let Some((s, v)) = self.marked {
            assert!(s < index || durable >= v, "a watermark never goes back");
        }
        self.syncs_since = 0;
        self.marked = Some((index, durable));
        Some((capacity, self.page.stamp(index, durable)))
    }
}
