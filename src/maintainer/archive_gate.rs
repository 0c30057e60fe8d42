//! The maintainer's side of the archive tier: it offers each new cold segment to the
//! archiver and deletes a cold segment only once the archiver has confirmed its upload.
//! Both directions are SPSC rings, so neither thread ever waits for the other.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Capacity of each ring; offers that do not fit wait in the maintainer's outbox.
pub const GATE_RING: usize = 1024;

/// How the two threads tell each other they are done, so that closing a recorder lets
/// the last uploads be confirmed and the last deletions happen before both stop.
#[derive(Debug, Default)]
pub struct GateFlags {
    /// The maintainer's loop has ended: no more offers will come.
    pub maintainer_done: AtomicBool,
    /// The archiver's loop has ended: no more confirmations will come.
    pub archiver_done: AtomicBool,
}

/// The maintainer's end.
pub struct ArchiveGate {
    flags: Arc<GateFlags>,
    offer: rtrb::Producer<u64>,
    confirmed: rtrb::Consumer<u64>,
    /// Offers that found the ring full, oldest first.
    outbox: VecDeque<u64>,
    /// Cold segments whose upload is confirmed and that are still on disk.
    archived: BTreeSet<u64>,
}

/// The archiver's end.
pub struct ArchiverLink {
    /// Shared with the maintainer's end.
    pub flags: Arc<GateFlags>,
    /// Cold segments to upload, by index.
    pub offers: rtrb::Consumer<u64>,
    /// Indexes whose upload is confirmed (and listed in the manifest).
    pub confirmed: rtrb::Producer<u64>,
}

/// A connected pair.
pub fn archive_gate() -> (ArchiveGate, ArchiverLink) {
    let (otx, orx) = rtrb::RingBuffer::new(GATE_RING);
    let (ctx, crx) = rtrb::RingBuffer::new(GATE_RING);
    let flags = Arc::new(GateFlags::default());
    (
        ArchiveGate {
            flags: flags.clone(),
            offer: otx,
            confirmed: crx,
            outbox: VecDeque::new(),
            archived: BTreeSet::new(),
        },
        ArchiverLink {
            flags,
            offers: orx,
            confirmed: ctx,
        },
    )
}

impl ArchiveGate {
    /// Queues a cold segment for upload.
    pub fn offer(&mut self, index: u64) {
        self.outbox.push_back(index);
        self.flush();
    }

    /// Moves queued offers into the ring and takes confirmations; true if anything moved.
    pub fn poll(&mut self) -> bool {
        let mut moved = self.flush();
        while let Ok(i) = self.confirmed.pop() {
            self.archived.insert(i);
            moved = true;
        }
        moved
    }

    fn flush(&mut self) -> bool {
        let mut moved = false;
        while let Some(&i) = self.outbox.front() {
            if self.offer.push(i).is_err() {
                break;
            }
            self.outbox.pop_front();
            moved = true;
        }
        moved
    }

    /// Whether `index` may be deleted.
    pub fn is_archived(&self, index: u64) -> bool {
        self.archived.contains(&index)
    }

    /// `index` was deleted.
    pub fn forget(&mut self, index: u64) {
        self.archived.remove(&index);
    }

    /// Offers not yet in the ring.
    pub fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The archiver has stopped; nothing more will be confirmed.
    pub fn archiver_done(&self) -> bool {
        self.flags.archiver_done.load(Ordering::Acquire)
    }
}

impl Drop for ArchiveGate {
    fn drop(&mut self) {
        self.flags.maintainer_done.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_overflow_into_the_outbox_and_confirmations_open_the_gate() {
        let (mut gate, mut link) = archive_gate();
        for i in 0..(GATE_RING as u64 + 10) {
            gate.offer(i);
        }
        assert_eq!(gate.outbox.len(), 10);
        let mut seen = Vec::new();
        while let Ok(i) = link.offers.pop() {
            seen.push(i);
        }
        gate.poll();
        while let Ok(i) = link.offers.pop() {
            seen.push(i);
        }
        assert_eq!(seen, (0..GATE_RING as u64 + 10).collect::<Vec<_>>());
        assert!(!gate.is_archived(3));
        link.confirmed.push(3).unwrap();
        assert!(gate.poll());
        assert!(gate.is_archived(3));
        gate.forget(3);
        assert!(!gate.is_archived(3));
    }
}
