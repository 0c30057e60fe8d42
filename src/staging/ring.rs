//! The ring of staging buffers: `count` files of `capacity` bytes in the staging directory,
//! each mapped once and prefaulted once at open, and unmapped only when the last holder of
//! the ring (recorder or maintainer) drops it. Buffers circulate by slot number: the
//! maintainer prepares a zeroed one for the next segment, the writer fills it, the
//! maintainer drains it to disk, zeroes its used part and prepares it again. Ownership of a
//! slot is handed over through the SPSC rings between them, never shared.

use std::ptr::NonNull;
use std::sync::Arc;

use super::dir::StagingDir;
use crate::error::Result;
use crate::segment::SharedMap;

/// See the module docs.
pub struct StagingRing {
    dir: StagingDir,
    /// One mapping per slot, each `capacity` bytes; never unmapped while the ring lives.
    maps: Vec<SharedMap>,
    capacity: usize,
    /// Whether every buffer is locked in memory ([`Self::lock_memory`]).
    locked: std::sync::atomic::AtomicBool,
}

// SAFETY: the ring hands out raw pointers to its mappings; which thread may write a slot is
// decided by who holds that slot's token (passed through the SPSC rings), and the mappings
// themselves live as long as the ring. `&StagingRing` exposes no other shared mutable state.
unsafe impl Sync for StagingRing {}

/// Name of the buffer file of `slot`.
fn buffer_name(slot: usize) -> String {
    format!("buf-{slot:02}")
}

impl StagingRing {
    /// Creates `count` buffers of `capacity` bytes in `dir` (which must hold none: replay
    /// removes what it applied), maps them and prefaults them. Costs `count * capacity`
    /// bytes of tmpfs memory for as long as the recorder is open.
    pub fn create(dir: StagingDir, count: usize, capacity: u64) -> Result<Arc<Self>> {
        let mut maps = Vec::with_capacity(count);
        for slot in 0..count {
            let name = buffer_name(slot);
            let made = dir
                .create_buffer(&name, capacity)
                // SAFETY: the buffer was just created at `capacity` bytes; staging buffers
                // never shrink.
                .and_then(|file| unsafe {
                    SharedMap::map(&file, capacity as usize, &dir.path().join(&name))
                });
            match made {
                Ok(map) => maps.push(map),
                Err(e) => {
                    drop(maps);
                    let _ = dir.remove_all();
                    return Err(e);
                }
            }
        }
        Ok(Arc::new(StagingRing {
            dir,
            maps,
            capacity: capacity as usize,
            locked: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Locks every buffer in memory (`mlock`), so that tmpfs never swaps out a page the
    /// writer is about to fill (a major fault on the hot path). Where `RLIMIT_MEMLOCK` (or
    /// the lack of `CAP_IPC_LOCK`) refuses, the buffers stay unlocked and a warning says
    /// how much would be needed. True if locked.
    pub(crate) fn lock_memory(&self) -> bool {
        for (slot, map) in self.maps.iter().enumerate() {
            // SAFETY: the range is exactly one live mapping of this ring.
            if unsafe { libc::mlock(map.as_ptr().cast(), map.len()) } != 0 {
                let e = std::io::Error::last_os_error();
                for done in &self.maps[..slot] {
                    // SAFETY: a range locked just above.
                    unsafe { libc::munlock(done.as_ptr().cast(), done.len()) };
                }
                log::warn!(
                    "{}: staging buffers not locked in memory ({e}): {} bytes need RLIMIT_MEMLOCK \
                     (ulimit -l) or CAP_IPC_LOCK; without it a swapped-out page would fault on \
                     the writer's thread",
                    self.dir.path().display(),
                    self.maps.len() * self.capacity
                );
                return false;
            }
        }
        self.locked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Whether the buffers are locked in memory.
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Bytes per buffer.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Start of the mapping of `slot`.
    pub fn base(&self, slot: usize) -> NonNull<u8> {
        NonNull::new(self.maps[slot].as_ptr()).expect("a mapping is never null")
    }

    /// Zeroes `[from, upto)` of `slot` so it can stage the next segment (the writer relies
    /// on zeros after its last record). Only the holder of the slot's token may call this.
    pub(crate) fn zero_range(&self, slot: usize, from: usize, upto: usize) {
        let upto = upto.min(self.capacity);
        if from >= upto {
            return;
        }
        // SAFETY: the range lies inside the slot's mapping, and the caller holds the slot:
        // nobody else writes it now.
        unsafe { std::ptr::write_bytes(self.maps[slot].as_ptr().add(from), 0, upto - from) };
    }

    /// Unmaps and removes every buffer and the directory: a clean close, once everything
    /// staged is durable on disk.
    pub fn remove(self) -> Result<()> {
        let StagingRing { dir, maps, .. } = self;
        drop(maps);
        dir.remove_all()
    }
}
