//! Reader positions: a tailer may publish how far it has read in a small file of its own,
//! `<log>/readers/<name>.pos`, so that it can resume after a restart and, if the recorder is
//! configured to (`Config::hold_for_readers`), retention keeps the cold segments it has not
//! read yet, within a budget. The recorder only reads these files.
//!
//! A file is 16 bytes: the next sequence number the reader will read (everything below it is
//! read), little-endian u64, its CRC32C (u32), 4 zero bytes. Written in place with one
//! `pwrite`; a torn or foreign file reads as no position.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The subdirectory of a log holding the readers' position files.
pub const READERS_DIR: &str = "readers";
const SUFFIX: &str = ".pos";
const LEN: usize = 16;

/// One reader's position file (see the module docs).
pub struct ReaderPosition {
    file: File,
    path: PathBuf,
}

fn encode(next_seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(&next_seq.to_le_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    if b.len() != LEN || b[12..] != [0; 4] {
        return None;
    }
    let seq = u64::from_le_bytes(b[..8].try_into().ok()?);
    let crc = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32c::crc32c(&b[..8]) == crc).then_some(seq)
}

impl ReaderPosition {
    /// Opens (creating it and `readers/` if missing) the position file of reader `name`
    /// (letters, digits, `-` and `_`; at most 64).
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !valid {
            return Err(Error::Config(format!(
                "reader name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        let readers = dir.join(READERS_DIR);
        std::fs::create_dir_all(&readers).map_err(|e| Error::io("mkdir", &readers, e))?;
        let path = readers.join(format!("{name}{SUFFIX}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(ReaderPosition { file, path })
    }

    /// The saved position: the next sequence number to read.
    pub fn load(&self) -> Option<u64> {
        let mut b = [0u8; LEN];
        match self.file.read_at(&mut b, 0) {
            Ok(LEN) => decode(&b),
            _ => None,
        }
    }

    /// Saves `next_seq` (everything below it is read). Not synced: after a power cut the
    /// reader may read again what it read last (never skip).
    pub fn store(&self, next_seq: u64) -> Result<()> {
        self.file
            .write_all_at(&encode(next_seq), 0)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lowest position among the readers of `dir` (`None`: no reader has one).
pub fn min_reader_position(dir: &Path) -> Option<u64> {
    let rd = std::fs::read_dir(dir.join(READERS_DIR)).ok()?;
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| decode(&std::fs::read(e.path()).ok()?))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_the_slowest_reader_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(min_reader_position(dir.path()), None);
        let a = ReaderPosition::open(dir.path(), "risk-engine").unwrap();
        let b = ReaderPosition::open(dir.path(), "audit_1").unwrap();
        assert_eq!(a.load(), None);
        a.store(5_000).unwrap();
        b.store(1_200).unwrap();
        assert_eq!(a.load(), Some(5_000));
        assert_eq!(min_reader_position(dir.path()), Some(1_200));
        // A damaged file is no position, not a wrong one.
        std::fs::write(b.path(), [0xff; 16]).unwrap();
        assert_eq!(min_reader_position(dir.path()), Some(5_000));
        assert!(ReaderPosition::open(dir.path(), "../evil").is_err());
    }
}
