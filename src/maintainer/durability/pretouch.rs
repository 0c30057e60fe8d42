//! The pretoucher (Direct mode): keeps the pages just ahead of the writer faulted in as
//! writable, so that the writer never takes the fault a journal commit's write-protection
//! would cost it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Durability;

/// How far ahead of the writer the maintainer keeps pages faulted in writable.
const PRETOUCH_AHEAD: usize = 4 << 20;
/// How often it does so.
const PRETOUCH_EVERY: Duration = Duration::from_millis(1);

impl Durability {
    /// The pretoucher: every millisecond, faults in as writable again the next
    /// `PRETOUCH_AHEAD` bytes of the active segment after the writer, and the start of the
    /// next prepared segment. A journal commit (any fsync on the file system) may have
    /// written back and write-protected those prefaulted pages; the writer's first store to
    /// such a page would fault and could wait for the commit. Here the maintainer takes that
    /// fault instead. Pages still writable cost a page-table walk.
    pub fn pretouch(&mut self, stats: &crate::maintainer::MaintainerStats) {
        let now = Instant::now();
        if self.drain.is_some() || now < self.pretouch_next {
            return;
        }
        self.pretouch_next = now + PRETOUCH_EVERY;
        let Some((index, base, len, off)) = self.link.pretouch_snapshot() else {
            return;
        };
        while self.prepared_maps.front().is_some_and(|m| m.0 <= index) {
            self.prepared_maps.pop_front(); // taken by the writer
        }
        let page = crate::constants::PAGE_SIZE as usize;
        let start = (off as usize / page) * page;
        if base != 0 && start < len {
            let n = PRETOUCH_AHEAD.min(len - start);
            // SAFETY: the link names the active segment's mapping only until the writer hands
            // it over (the writer switches or retires the link first), and it is unmapped
            // only by this thread, after that; the range lies inside it.
            if unsafe { crate::segment::populate_write(base + start, n) }.is_err() {
                stats.pretouch_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if start >= len || len - start < PRETOUCH_AHEAD {
            if let Some(&(_, nb, nl)) = self.prepared_maps.front() {
                // SAFETY: a prepared segment's mapping is unmapped by the writer only at
                // close, after this thread has stopped.
                if unsafe { crate::segment::populate_write(nb, PRETOUCH_AHEAD.min(nl)) }.is_err() {
                    stats.pretouch_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
