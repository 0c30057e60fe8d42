//! Recovery's operations on a segment file already written: seal it in place at the end of
//! its last good record, or truncate a sealed one to its used length, each made durable
//! before its new size (docs/FORMAT.md).

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::format::Seal;
use super::writer::injected_at;
use crate::error::{Error, Result};
use crate::io::fault::FaultPlan;
use crate::io::{OpCode, Target};

/// Writes `seal` at `seal_offset` of a hot segment, makes it durable, then truncates the file
/// just past it and syncs again: recovery's cut of a torn or unsealed tail.
pub fn seal_in_place(path: &Path, seal_offset: u64, seal: &Seal) -> Result<()> {
    seal_in_place_with(path, seal_offset, seal, None)
}

/// [`seal_in_place`], with fault rules on [`Target::Recovery`] applied (tests).
pub(crate) fn seal_in_place_with(
    path: &Path,
    seal_offset: u64,
    seal: &Seal,
    faults: Option<&FaultPlan>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let seal_len = seal.framing().seal_len();
    assert_eq!(
        seal.end,
        seal_offset + seal_len as u64,
        "a seal ends where it says"
    );
    let step = |code, op| injected_at(faults, code, Target::Recovery, op, path);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    step(OpCode::Write, "write")?;
    f.write_all_at(&seal.encode()[..seal_len], seal_offset)
        .map_err(|e| Error::io("write", path, e))?;
    finish_truncated(&f, path, seal.end, &step)
}

/// Truncates a sealed segment to its used length and fdatasyncs it (what persist does).
pub fn truncate_sealed(path: &Path, used: u64) -> Result<()> {
    truncate_sealed_with(path, used, None)
}

/// [`truncate_sealed`], with fault rules on [`Target::Recovery`] applied (tests).
pub(crate) fn truncate_sealed_with(
    path: &Path,
    used: u64,
    faults: Option<&FaultPlan>,
) -> Result<()> {
    let step = |code, op| injected_at(faults, code, Target::Recovery, op, path);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    finish_truncated(&f, path, used, &step)
}

/// fdatasync, truncate to `len`, fdatasync. The records and seal are durable before the
/// size: a truncated segment proves its records durable to the next recovery
/// (docs/FORMAT.md), so its size must never reach the disk first.
fn finish_truncated(
    f: &File,
    path: &Path,
    len: u64,
    step: &dyn Fn(OpCode, &'static str) -> Result<()>,
) -> Result<()> {
    step(OpCode::Fdatasync, "fdatasync")?;
    f.sync_data().map_err(|e| Error::io("fdatasync", path, e))?;
    step(OpCode::Ftruncate, "ftruncate")?;
    f.set_len(len)
        .map_err(|e| Error::io("ftruncate", path, e))?;
    step(OpCode::Fdatasync, "fdatasync")?;
    f.sync_data().map_err(|e| Error::io("fdatasync", path, e))
}
