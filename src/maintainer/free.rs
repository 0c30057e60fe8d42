//! Free: deletes a cold segment with one linked chain `unlinkat(.wal.lz4) → fsync(dir)`.

use std::ffi::CString;
use std::path::PathBuf;

use super::job::{ud, Ctx};
use crate::error::Error;
use crate::io::{check, push_chain, Op, Target};
use crate::segment::names::{cold_name, hot_name};

const UNLINK: u32 = 0;
const DIRSYNC: u32 = 1;

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
    results: [Option<i32>; 2],
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
            results: [None; 2],
        }
    }

    pub fn start(&mut self, slot: u32, cx: &mut Ctx<'_>) -> std::io::Result<()> {
        let ops = [
            Op::unlink(self.target, cx.dirfd, &self.name, ud(slot, UNLINK)),
            Op::fsync(Target::Dir, cx.dirfd, ud(slot, DIRSYNC)),
        ];
        // SAFETY: `name` lives in this job, which stays in its slot until both complete.
        unsafe { push_chain(cx.be, &ops) }
    }

    pub fn complete(&mut self, tag: u32, result: i32, cx: &Ctx<'_>) -> Option<FreeOutcome> {
        self.results[tag as usize] = Some(result);
        let [Some(u), Some(d)] = self.results else {
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
