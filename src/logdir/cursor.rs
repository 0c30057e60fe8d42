//! The recorder's cursor: how far the log is committed and durable, published to readers in
//! other processes (contract 9). The maintainer of a running recorder stores, every turn of
//! its loop, the last appended sequence number it sees and `durable_seq` in a small mapped
//! file, `<log>/readers/recorder.cursor`; a [`super::Tailer`] with
//! [`super::Visibility::Durable`] delivers only records up to its `durable_seq`, which a power
//! cut never takes back.
//!
//! Layout (64 bytes, little-endian, each u64 stored whole with release ordering):
//!
//! ```text
//! 0  magic "WALRCUR1"    8
//! 8  appended seq        u64  (as the maintainer last saw it; committed, maybe not durable)
//! 16 durable seq         u64  (every record up to it survives a power cut)
//! 24 reserved (zero)     40
//! ```
//!
//! The file is never synced and never needs to be: its values were true when stored, and a
//! new recorder rewrites it at open. A reader that finds no cursor (an older log, or no
//! recorder ever ran here) treats only segments that prove themselves durable as durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::reader_position::READERS_DIR;
use crate::error::{Error, Result};
use crate::segment::{ReadMap, SharedMap};

/// The cursor file's name in `readers/`.
pub const CURSOR_FILE: &str = "recorder.cursor";
const MAGIC: &[u8; 8] = b"WALRCUR1";
const LEN: usize = 4096;
const APPENDED_AT: usize = 8;
const DURABLE_AT: usize = 16;

/// Where the cursor of the log in `dir` is.
pub fn cursor_path(dir: &Path) -> PathBuf {
    dir.join(READERS_DIR).join(CURSOR_FILE)
}

/// The maintainer's end: a writable mapping of the cursor.
pub(crate) struct CursorWriter {
    map: SharedMap,
}

impl CursorWriter {
    /// Creates (or reuses) the cursor of the log in `dir`, starting at `seq` for both values.
    pub(crate) fn create(dir: &Path, seq: u64) -> Result<Self> {
        let (file, path) = super::reader_position::open_in_readers(dir, CURSOR_FILE)?;
        file.set_len(LEN as u64)
            .map_err(|e| Error::io("ftruncate", &path, e))?;
        // SAFETY: the file was just sized to LEN; only this type resizes it, never below.
        let map = unsafe { SharedMap::map(&file, LEN, &path)? };
        // SAFETY: the mapping is LEN bytes, writable, and the magic fits at its start.
        unsafe { std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), map.as_ptr(), MAGIC.len()) };
        let w = CursorWriter { map };
        w.publish(seq, seq);
        Ok(w)
    }

    fn slot(&self, at: usize) -> &AtomicU64 {
        assert!(at % 8 == 0 && at + 8 <= LEN, "a cursor field");
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned); shared memory read
        // by other processes through atomic loads.
        unsafe { &*(self.map.as_ptr().add(at) as *const AtomicU64) }
    }

    /// Publishes the appended and durable sequence numbers (durable first: a reader never
    /// sees a durable value above the appended one it reads after it).
    pub(crate) fn publish(&self, appended: u64, durable: u64) {
        self.slot(DURABLE_AT)
            .store(durable.to_le(), Ordering::Release);
        self.slot(APPENDED_AT)
            .store(appended.max(durable).to_le(), Ordering::Release);
    }
}

/// A reader's view of the cursor (read-only mapping).
pub(crate) struct CursorReader {
    map: ReadMap,
}

impl CursorReader {
    /// Maps the cursor of the log in `dir`, if there is a valid one.
    pub(crate) fn open(dir: &Path) -> Option<Self> {
        let path = cursor_path(dir);
        let file = File::open(&path).ok()?;
        if file.metadata().ok()?.len() < LEN as u64 {
            return None;
        }
        // SAFETY: the file is LEN bytes and the recorder never shrinks it.
        let map = unsafe { ReadMap::map(&file, LEN, &path) }.ok()?;
        let mut magic = [0u8; 8];
        map.copy_to(0, &mut magic);
        (&magic == MAGIC).then_some(CursorReader { map })
    }

    /// Every record up to here is durable.
    pub(crate) fn durable(&self) -> u64 {
        self.map.load_u64(DURABLE_AT)
    }
}
