//! File names of contract 1: `<index>.wal` (hot), `<index>.wal.lz4` (cold), `*.tmp`
//! (temporary), with `<index>` in 20 decimal digits. Anything else is foreign and untouched.

use std::path::{Path, PathBuf};

/// Digits of the index in a file name.
pub const INDEX_DIGITS: usize = 20;
/// Suffix of a hot segment.
pub const HOT_SUFFIX: &str = ".wal";
/// Suffix of a cold (compressed) segment.
pub const COLD_SUFFIX: &str = ".wal.lz4";
/// Suffix of a temporary file.
pub const TMP_SUFFIX: &str = ".tmp";

/// What a directory entry's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `<index>.wal`
    Hot(u64),
    /// `<index>.wal.lz4`
    Cold(u64),
    /// `<index>.wal.lz4.tmp` or another `<index>.*.tmp` of ours.
    Tmp(u64),
    /// Not ours.
    Foreign,
}

/// `<index>.wal`
pub fn hot_name(index: u64) -> String {
    format!("{index:020}{HOT_SUFFIX}")
}

/// `<index>.wal.lz4`
pub fn cold_name(index: u64) -> String {
    format!("{index:020}{COLD_SUFFIX}")
}

/// `<dir>/<index>.wal`
pub fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(hot_name(index))
}

/// `<dir>/<index>.wal.lz4`
pub fn cold_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(cold_name(index))
}

/// Classifies a file name.
pub(crate) fn classify(name: &str) -> FileKind {
    if name.len() <= INDEX_DIGITS || !name.is_char_boundary(INDEX_DIGITS) {
        return FileKind::Foreign;
    }
    let (digits, rest) = name.split_at(INDEX_DIGITS);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return FileKind::Foreign;
    }
    let Ok(index) = digits.parse::<u64>() else {
        return FileKind::Foreign;
    };
    match rest {
        HOT_SUFFIX => FileKind::Hot(index),
        COLD_SUFFIX => FileKind::Cold(index),
        r if r.starts_with(HOT_SUFFIX) && r.ends_with(TMP_SUFFIX) => FileKind::Tmp(index),
        _ => FileKind::Foreign,
    }
}

/// The subdirectory of a log where recovery and `walctl repair` move what they drop (and
/// where a lost-acknowledged note is left): never read as part of the log.
pub const QUARANTINE_DIR: &str = "quarantine";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_files_are_recognised() {
        assert_eq!(hot_name(42), "00000000000000000042.wal");
        assert_eq!(classify(&hot_name(42)), FileKind::Hot(42));
        assert_eq!(classify(&cold_name(7)), FileKind::Cold(7));
        assert_eq!(
            classify("00000000000000000007.wal.lz4.tmp"),
            FileKind::Tmp(7)
        );
        assert_eq!(classify("notes.txt"), FileKind::Foreign);
        assert_eq!(classify("0000000000000000007.wal"), FileKind::Foreign);
        assert_eq!(classify("00000000000000000007.wal.bak"), FileKind::Foreign);
        assert_eq!(classify("99999999999999999999.wal"), FileKind::Foreign);
    }
}
