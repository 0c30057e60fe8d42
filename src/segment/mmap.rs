//! A shared, writable mapping of a segment file. Owns the mapping and unmaps it on drop;
//! knows nothing about the format.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// A `MAP_SHARED` read-write mapping of a whole file.
pub struct SharedMap {
    /// Start of the mapping; valid for `len` bytes until drop.
    ptr: NonNull<u8>,
    /// Length of the mapping in bytes; the file is at least this long (fallocated).
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread is
// fine, and `&SharedMap` hands out no interior mutability.
unsafe impl Send for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` and prefaults them for writing.
    ///
    /// # Safety
    /// `file` must be at least `len` bytes long and must not shrink while mapped (a segment
    /// file fallocated to its capacity, a staging buffer): touching a page past its end
    /// raises SIGBUS.
    pub(crate) unsafe fn map(file: &File, len: usize, path: &Path) -> Result<Self> {
        let map = SharedMap {
            ptr: map_shared(file, len, libc::PROT_READ | libc::PROT_WRITE, path)?,
            len,
        };
        map.prefault(path)?;
        Ok(map)
    }

    /// Faults every page in as writable now, so that the writer never takes a page fault.
    /// `MADV_POPULATE_WRITE` measured 10x faster than `MAP_POPULATE` (PERF_NOTES.md); kernels
    /// before 5.14 reject it with EINVAL and get the pages touched one by one instead.
    fn prefault(&self, path: &Path) -> Result<()> {
        // SAFETY: the range is exactly this mapping.
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().cast(),
                self.len,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(Error::io("madvise(MADV_POPULATE_WRITE)", path, err));
        }
        for off in (0..self.len).step_by(4096) {
            // SAFETY: off < len, inside the mapping; a volatile read-then-write of the same byte
            // changes nothing but forces a write fault.
            unsafe {
                let p = self.ptr.as_ptr().add(off);
                p.write_volatile(p.read_volatile());
            }
        }
        Ok(())
    }

    /// Start of the mapping.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes back `[0, upto)` to the file and waits (msync MS_SYNC), so the records in that
    /// range survive power loss.
    pub(crate) fn sync_prefix(&self, upto: usize, path: &Path) -> Result<()> {
        let upto = upto.min(self.len);
        // SAFETY: the range lies inside this mapping and starts at its page-aligned start.
        let rc = unsafe { libc::msync(self.ptr.as_ptr().cast(), upto, libc::MS_SYNC) };
        if rc != 0 {
            return Err(Error::io("msync", path, std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Faults `[base, base + len)` in as writable again (`MADV_POPULATE_WRITE`) on the calling
/// thread: the maintainer's "pretouch" of the pages the writer is about to fill, which a
/// journal commit may have cleaned (and write-protected) since they were prepared.
///
/// # Safety
/// The range must lie in a mapping of this process that no one unmaps concurrently. (The
/// call changes no byte of memory; the kernel checks the range.)
pub(crate) unsafe fn populate_write(base: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: per the caller; madvise validates the range and only takes write faults.
    let rc = unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `map`, unmapped exactly once here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `mmap(len, prot, MAP_SHARED, file, 0)`.
fn map_shared(file: &File, len: usize, prot: libc::c_int, path: &Path) -> Result<NonNull<u8>> {
    // SAFETY: a fresh mapping at an address the kernel chooses; the arguments are valid and
    // the result is checked against MAP_FAILED.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(Error::io("mmap", path, std::io::Error::last_os_error()));
    }
    Ok(NonNull::new(raw.cast()).expect("mmap returned null without MAP_FAILED"))
}

/// A `MAP_SHARED` read-only mapping of a whole file that another process writes (a tailer's
/// view of a staging buffer). Reads through it race with that process's writes: callers load
/// what decides visibility atomically (a record's sequence number, stored last with release
/// ordering) and check the rest (checksums) before trusting it.
pub struct ReadMap {
    /// Start of the mapping; valid for `len` bytes until drop.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory owned by this value; `&ReadMap` only reads.
unsafe impl Send for ReadMap {}

impl ReadMap {
    /// Maps the first `len` bytes of `file` for reading.
    ///
    /// # Safety
    /// The file must not shrink below `len` while mapped (staging buffers never do): a read
    /// past its end raises SIGBUS.
    pub(crate) unsafe fn map(file: &File, len: usize, path: &Path) -> Result<Self> {
        Ok(ReadMap {
            ptr: map_shared(file, len, libc::PROT_READ, path)?,
            len,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The 8 bytes at `at` (a multiple of 8), loaded atomically with acquire ordering: what
    /// the writer stored before its release store of them is visible after.
    pub(crate) fn load_u64(&self, at: usize) -> u64 {
        assert!(at % 8 == 0 && at + 8 <= self.len, "aligned and in bounds");
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); an AtomicU64 view of
        // shared memory is how another process's release store is acquired.
        let a = unsafe { &*(self.ptr.as_ptr().add(at) as *const std::sync::atomic::AtomicU64) };
        u64::from_le(a.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Copies `out.len()` bytes from `at` (they may be changing: check them after).
    pub(crate) fn copy_to(&self, at: usize, out: &mut [u8]) {
        assert!(at + out.len() <= self.len, "in bounds");
        // SAFETY: in bounds of the mapping; `out` is ours and does not overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), out.as_mut_ptr(), out.len())
        };
    }
}

impl Drop for ReadMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A read-only mapping of a sealed, persisted segment file, which nothing writes again (the
/// maintainer only unlinks it, which leaves a mapping intact): safe to borrow as a slice.
pub struct SealedMap {
    /// Start of the mapping; valid for `len` bytes until drop.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: read-only memory owned by this value.
unsafe impl Send for SealedMap {}
// SAFETY: `&SealedMap` only reads memory that nobody writes.
unsafe impl Sync for SealedMap {}

impl SealedMap {
    /// Maps the whole of `file` (`len` bytes, not zero).
    ///
    /// # Safety
    /// The caller found the file sealed and persisted: its length is final (never truncated
    /// again, or a read raises SIGBUS) and its bytes are never written again (the slice
    /// [`Self::as_slice`] hands out is immutable).
    pub(crate) unsafe fn map(file: &File, len: usize, path: &Path) -> Result<Self> {
        Ok(SealedMap {
            ptr: map_shared(file, len, libc::PROT_READ, path)?,
            len,
        })
    }

    /// The file's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable until drop; a sealed, persisted segment is never
        // written or truncated again (see the type's documentation), so no one mutates them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SealedMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
