//! The maintainer's side of the archive tier: it offers each new cold segment to the
//! archiver and deletes a cold segment only once the archiver has confirmed its upload.
//! Both directions are SPSC rings, so neither thread ever waits for the other. The stop
//! handshake (each side's `done` flag, stored after its last push, loaded before its final
//! drain) is model-checked with loom (`loom_tests`), the rings replaced by a loom-visible one.

use std::collections::{BTreeSet, VecDeque};

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
use loom::sync::Arc;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::Arc;

#[cfg(not(loom))]
mod ring {
    pub use rtrb::{Consumer, Producer};

    pub fn new(capacity: usize) -> (Producer<u64>, Consumer<u64>) {
        rtrb::RingBuffer::new(capacity)
    }
}

/// Under loom: a bounded SPSC queue whose synchronization loom sees (rtrb's atomics are
/// std's). Like rtrb's, a pop happens after the push of what it takes, and nothing more.
#[cfg(loom)]
mod ring {
    use loom::sync::{Arc, Mutex};
    use std::collections::VecDeque;

    pub struct Producer<T> {
        q: Arc<Mutex<VecDeque<T>>>,
        capacity: usize,
    }

    pub struct Consumer<T> {
        q: Arc<Mutex<VecDeque<T>>>,
    }

    pub fn new(capacity: usize) -> (Producer<u64>, Consumer<u64>) {
        let q = Arc::new(Mutex::new(VecDeque::new()));
        (
            Producer {
                q: q.clone(),
                capacity,
            },
            Consumer { q },
        )
    }

    impl<T> Producer<T> {
        pub fn push(&mut self, v: T) -> Result<(), T> {
            let mut q = self.q.lock().unwrap();
            if q.len() == self.capacity {
                return Err(v);
            }
            q.push_back(v);
            Ok(())
        }
    }

    impl<T> Consumer<T> {
        pub fn pop(&mut self) -> Result<T, ()> {
            self.q.lock().unwrap().pop_front().ok_or(())
        }
    }
}

/// Capacity of each ring; offers that do not fit wait in the maintainer's outbox.
pub const GATE_RING: usize = 1024;

/// How the two threads tell each other they are done, so that closing a recorder lets
/// the last uploads be confirmed and the last deletions happen before both stop.
#[derive(Debug)]
pub struct GateFlags {
    /// The maintainer's loop has ended: no more offers will come.
    pub maintainer_done: AtomicBool,
    /// The archiver's loop has ended: no more confirmations will come.
    pub archiver_done: AtomicBool,
}

impl GateFlags {
    fn new() -> Self {
        GateFlags {
            maintainer_done: AtomicBool::new(false),
            archiver_done: AtomicBool::new(false),
        }
    }
}

/// The maintainer's end.
pub struct ArchiveGate {
    flags: Arc<GateFlags>,
    offer: ring::Producer<u64>,
    confirmed: ring::Consumer<u64>,
    /// Offers that found the ring full, oldest first.
    outbox: VecDeque<u64>,
    /// Cold segments whose upload is confirmed and that are still on disk.
    archived: BTreeSet<u64>,
}

/// The archiver's end.
pub struct ArchiverLink {
    flags: Arc<GateFlags>,
    /// Cold segments to upload, by index.
    offers: ring::Consumer<u64>,
    /// Indexes whose upload is confirmed (and listed in the manifest).
    confirmed: ring::Producer<u64>,
}

/// A connected pair.
pub(crate) fn archive_gate() -> (ArchiveGate, ArchiverLink) {
    let (otx, orx) = ring::new(GATE_RING);
    let (ctx, crx) = ring::new(GATE_RING);
    let flags = Arc::new(GateFlags::new());
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
    pub(crate) fn is_archived(&self, index: u64) -> bool {
        self.archived.contains(&index)
    }

    /// `index` was deleted.
    pub fn forget(&mut self, index: u64) {
        self.archived.remove(&index);
    }

    /// Offers not yet in the ring.
    pub(crate) fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The archiver has stopped; nothing more will be confirmed.
    pub(crate) fn archiver_done(&self) -> bool {
        self.flags.archiver_done.load(Ordering::Acquire)
    }
}

impl ArchiverLink {
    /// Takes every offer in the ring, oldest first. Returns whether the maintainer had
    /// stopped before they were taken: then no offer can follow, and the ones taken are all
    /// there will be (the flag is loaded first; loaded after, an offer pushed in between
    /// would be missed).
    pub(crate) fn take_offers(&mut self, mut each: impl FnMut(u64)) -> bool {
        let maintainer_done = self.flags.maintainer_done.load(Ordering::Acquire);
        while let Ok(index) = self.offers.pop() {
            each(index);
        }
        maintainer_done
    }

    /// Confirms an upload; gives `index` back if the ring is full (push it again later).
    pub(crate) fn confirm(&mut self, index: u64) -> Result<(), u64> {
        self.confirmed.push(index).map_err(|_| index)
    }

    /// The archiver's loop has ended: after its last confirmation.
    pub fn finish(&self) {
        self.flags.archiver_done.store(true, Ordering::Release);
    }
}

impl Drop for ArchiveGate {
    fn drop(&mut self) {
        self.flags.maintainer_done.store(true, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
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
        assert!(!link.take_offers(|i| seen.push(i)));
        gate.poll();
        assert!(!link.take_offers(|i| seen.push(i)));
        assert_eq!(seen, (0..GATE_RING as u64 + 10).collect::<Vec<_>>());
        assert!(!gate.is_archived(3));
        link.confirm(3).unwrap();
        assert!(gate.poll());
        assert!(gate.is_archived(3));
        gate.forget(3);
        assert!(!gate.is_archived(3));
    }
}

/// The stop handshake under every interleaving loom finds. Run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests` (`.ci/run` does).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// The archiver stops draining only once it has every offer the maintainer made before
    /// stopping (offers that waited in the outbox included: the ring holds one here).
    #[test]
    fn an_archiver_that_sees_the_maintainer_done_has_taken_every_offer() {
        loom::model(|| {
            let (otx, orx) = ring::new(1);
            let (ctx, crx) = ring::new(1);
            let flags = Arc::new(GateFlags::new());
            let mut gate = ArchiveGate {
                flags: flags.clone(),
                offer: otx,
                confirmed: crx,
                outbox: VecDeque::new(),
                archived: BTreeSet::new(),
            };
            let mut link = ArchiverLink {
                flags,
                offers: orx,
                confirmed: ctx,
            };
            let maintainer = loom::thread::spawn(move || {
                gate.offer(1);
                gate.offer(2);
                // The maintainer keeps running while offers wait (`waiting_for_archive`).
                while gate.has_outbox() && !gate.archiver_done() {
                    gate.poll();
                    loom::thread::yield_now();
                }
                let all_in_ring = !gate.has_outbox();
                drop(gate);
                all_in_ring
            });
            let mut taken = Vec::new();
            while !link.take_offers(|i| taken.push(i)) {
                loom::thread::yield_now();
            }
            link.finish();
            let all_in_ring = maintainer.join().unwrap();
            if all_in_ring {
                assert_eq!(taken, [1, 2]);
            } else {
                // The archiver stopped first (its close deadline): whatever it took is a
                // prefix, the rest stays on disk for the next open.
                assert!([1, 2].starts_with(&taken), "{taken:?}");
            }
        });
    }

    /// A confirmation pushed before the archiver stops is seen by a maintainer that polls
    /// after seeing it stopped: the last deletions of a close are not lost to the race.
    #[test]
    fn a_maintainer_that_sees_the_archiver_done_gets_its_last_confirmation() {
        loom::model(|| {
            let (mut gate, mut link) = archive_gate();
            let archiver = loom::thread::spawn(move || {
                link.confirm(7).unwrap();
                link.finish();
            });
            while !gate.archiver_done() {
                loom::thread::yield_now();
            }
            gate.poll();
            assert!(gate.is_archived(7));
            archiver.join().unwrap();
        });
    }
}
