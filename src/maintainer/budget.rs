//! The disk budget, beside the segment counts: `max_disk_bytes` (hot, prepared and cold
//! segments), `max_cold_age` and `min_free_bytes` (free space on the log's file system).
//! Retention deletes the oldest cold segment while a limit is exceeded; it never deletes a
//! hot segment, or a cold one the archive has not confirmed. When only such data is left
//! over a limit, the maintainer reports it (health `Degraded`, `budget_excess_bytes`, one log
//! line per episode). The budget is a hard cap: a segment is prepared only when its file
//! fits; otherwise the writer waits at its next rollover (stall cause `budget`, health
//! `Degraded`) while freezes (early ones too) and deletes make room, and gets
//! [`crate::Error::DiskBudget`] when nothing can.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::segment::names::cold_path;

/// How often free space is asked of the file system.
const STATVFS_EVERY: Duration = Duration::from_millis(100);

/// Which limit wants a cold segment deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `max_disk_bytes` (the values are `WriterLink::budget_limit`'s).
    DiskBytes = 0,
    /// `max_cold_age`.
    ColdAge = 1,
    /// `min_free_bytes`.
    FreeBytes = 2,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::DiskBytes => "max_disk_bytes",
            Limit::ColdAge => "max_cold_age",
            Limit::FreeBytes => "min_free_bytes",
        })
    }
}

pub(crate) struct Budget {
    dir: PathBuf,
    /// Size and freeze time of each cold segment.
    cold: HashMap<u64, (u64, SystemTime)>,
    free: Option<(Instant, u64)>,
}

impl Budget {
    /// The budget of `dir`, whose cold segments are `cold` (their sizes and times read now).
    pub fn new(dir: &Path, cold: &[u64]) -> Self {
        let cold = cold
            .iter()
            .filter_map(|&i| {
                let m = std::fs::metadata(cold_path(dir, i)).ok()?;
                Some((
                    i,
                    (m.len(), m.modified().unwrap_or_else(|_| SystemTime::now())),
                ))
            })
            .collect();
        Budget {
            dir: dir.to_path_buf(),
            cold,
            free: None,
        }
    }

    /// A segment was frozen into `bytes` bytes.
    pub fn frozen(&mut self, index: u64, bytes: u64) {
        self.cold.insert(index, (bytes, SystemTime::now()));
    }

    /// A cold segment was deleted.
    pub fn freed(&mut self, index: u64) {
        self.cold.remove(&index);
        self.free = None; // ask again
    }

    /// Bytes on disk: the cold segments not being deleted, `segment_size` for each of the
    /// `hot` segments (sealed, active and prepared; an upper bound: persisted ones are
    /// truncated), and for each of the `freezing` ones its `.tmp` at the mean cold size.
    pub(crate) fn disk_bytes(
        &self,
        config: &Config,
        (hot, freezing): (usize, usize),
        freeing: &[u64],
    ) -> u64 {
        let cold: u64 = self
            .cold
            .iter()
            .filter(|(i, _)| !freeing.contains(i))
            .map(|(_, (len, _))| len)
            .sum();
        let all: u64 = self.cold.values().map(|(len, _)| len).sum();
        let tmp = match self.cold.len() as u64 {
            0 => config.segment_size,
            n => all / n,
        };
        // A recorder's segment file is its capacity and the watermark page.
        let per_hot = config.segment_size + crate::segment::watermark::WATERMARK_LEN;
        cold + hot as u64 * per_hot + freezing as u64 * tmp
    }

    /// The limit that one more segment file would exceed, and by how much: the hard cap.
    /// Cold segments being deleted still count (their space is back only once the unlink
    /// completed). `hot`: (hot segment files, freezes in flight).
    pub fn no_room_for_next(
        &mut self,
        config: &Config,
        hot: (usize, usize),
    ) -> Option<(Limit, u64)> {
        let next = config.segment_size + crate::segment::watermark::WATERMARK_LEN;
        if let Some(max) = config.max_disk_bytes {
            let used = self.disk_bytes(config, hot, &[]) + next;
            if used > max {
                return Some((Limit::DiskBytes, used - max));
            }
        }
        if let Some(min) = config.min_free_bytes {
            if let Some(free) = self.free_bytes() {
                if free < min + next {
                    return Some((Limit::FreeBytes, min + next - free));
                }
            }
        }
        None
    }

    fn free_bytes(&mut self) -> Option<u64> {
        let now = Instant::now();
        let stale = self
            .free
            .map_or(true, |(at, _)| now.duration_since(at) > STATVFS_EVERY);
        if stale {
            self.free = statvfs_free(&self.dir).map(|b| (now, b));
        }
        self.free.map(|(_, b)| b)
    }

    /// The limit that wants the oldest cold segment (`oldest`) deleted now, and by how many
    /// bytes it is exceeded (0 for an age). `hot`: (hot segments, freezes in flight).
    pub fn exceeded(
        &mut self,
        config: &Config,
        hot: (usize, usize),
        freeing: &[u64],
        oldest: Option<u64>,
    ) -> Option<(Limit, u64)> {
        if let Some(max) = config.max_disk_bytes {
            // Room is kept for the next segment the maintainer prepares: deleting only once
            // it exists would leave the disk over the budget until the delete completes.
            let used = self.disk_bytes(config, hot, freeing) + config.segment_size;
            if used > max {
                return Some((Limit::DiskBytes, used - max));
            }
        }
        if let Some(min) = config.min_free_bytes {
            // Space being freed is not counted twice: wait for deletes in flight.
            if freeing.is_empty() {
                if let Some(free) = self.free_bytes() {
                    if free < min {
                        return Some((Limit::FreeBytes, min - free));
                    }
                }
            }
        }
        if let (Some(max_age), Some(i)) = (config.max_cold_age, oldest) {
            let frozen = self.cold.get(&i).map(|(_, t)| *t);
            let age = frozen.and_then(|t| SystemTime::now().duration_since(t).ok());
            if age.is_some_and(|a| a > max_age) {
                return Some((Limit::ColdAge, 0));
            }
        }
        None
    }
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
fn statvfs_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data filled by the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}
