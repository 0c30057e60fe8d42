//! Free: deletes a cold segment with one linked chain `unlinkat(.wal.lz4) → fsync(dir)`, and
//! beside it `unlinkat(index/<index>.idx)`, its sparse index (a cache: whether it is there,
//! and whether its unlink lasts, does not matter).

use std::ffi::CString;
use std::path::PathBuf;

use super::job::{ud, Ctx};
use crate::error::Error;
use crate::io::{check, push_chain, Op, Target};
use crate::segment::names::{cold_name, hot_name};

const UNLINK: u32 = 0;
const DIRSYNC: u32 = 1;
const UNLINK_INDEX: u32 = 2;

/// How a free ended.
pub(crate) enum FreeOutcome {
    Freed,
    FsyncFailed(Error),
    Retry(Error),
}

/// One cold segment being deleted, or the `.wal` left behind by a freeze whose unlink
/// failed (its `.wal.lz4` is durable).
pub(crate) struct FreeJob {
    pub index: u64,
    /// True for the leftover `.wal` of a frozen segment.
    pub leftover_hot: bool,
    target: Target,
    path: PathBuf,
    /// Relative name for unlinkat; must live until the completion (it does: the job does).
    name: CString,
    /// The sparse index's, for a cold segment.
    index_name: Option<CString>,
    results: [Option<i32>; 3],
}

impl FreeJob {
    pub fn new(index: u64, leftover_hot: bool, cx: &Ctx<'_>) -> Self {
        let (name, target) = if leftover_hot {
            (hot_name(index), Target::Segment)
        } else {
            (cold_name(index), Target::Cold)
        };
        FreeJob {
            index,
            leftover_hot,
            target,
            path: cx.dir.join(&name),
            name: CString::new(name).expect("names have no NUL"),
            index_name: (!leftover_hot).then(|| {
                let idx = format!("{}/{index}.idx", crate::segment::sparse_index::INDEX_DIR);
                CString::new(idx).expect("names have no NUL")
            }),
            // Without an index unlink, its result is never awaited.
            results: [None, None, leftover_hot.then_some(0)],
        }
    }

    pub fn start(&mut self, slot: u32, cx: &mut Ctx<'_>) -> std::io::Result<()> {
        let ops = [
            Op::unlink(self.target, cx.dirfd, &self.name, ud(slot, UNLINK)),
            Op::fsync(Target::Dir, cx.dirfd, ud(slot, DIRSYNC)),
        ];
        // SAFETY: `name` lives in this job, which stays in its slot until all complete.
        unsafe { push_chain(cx.be, &ops) }?;
        if let Some(idx) = &self.index_name {
            // On its own, not linked: the index goes whatever happens to the segment's unlink.
            let op = Op::unlink(Target::Index, cx.dirfd, idx, ud(slot, UNLINK_INDEX));
            // SAFETY: as above, for `index_name`.
            if unsafe { push_chain(cx.be, &[op]) }.is_err() {
                self.results[UNLINK_INDEX as usize] = Some(0); // not in flight: not awaited
            }
        }
        Ok(())
    }

    pub fn complete(&mut self, tag: u32, result: i32, cx: &Ctx<'_>) -> Option<FreeOutcome> {
        self.results[tag as usize] = Some(result);
        let [Some(u), Some(d), Some(_index)] = self.results else {
            return None;
        };
        if let Err(e) = check(u, "unlink", &self.path) {
            return Some(FreeOutcome::Retry(e));
        }
        if let Err(e) = check(d, "fsync dir", cx.dir) {
            return Some(FreeOutcome::FsyncFailed(e));
        }
        Some(FreeOutcome::Freed)
    }
}
