//! `walctl repair`: makes a log the recorder refuses open again. Before it reads the disk it
//! deals with the staging buffers a crashed recorder left (they may hold the only copy of
//! records never drained): applies those that continue the disk, as an open would, and moves
//! into `quarantine/` those that do not fit; then it recovers with [`TailRule::FirstBreak`].

use std::path::{Path, PathBuf};

use super::{recover_with, Action, RecoverOptions, Recovered, QUARANTINE_DIR};
use crate::error::{Error, Result};
use crate::logdir::TailRule;
use crate::staging::{replay, StagingDir};

/// Repairs `dir` whose staging directory, if any, is under `/dev/shm` (see [`repair_with`]).
pub fn repair(dir: &Path, dry_run: bool) -> Result<Recovered> {
    repair_with(dir, dry_run, Path::new("/dev/shm"))
}

/// `walctl repair`: takes the directory's lock (a running recorder keeps it); applies the
/// log's staging buffers under `staging_base` that continue the disk and moves the others
/// into `quarantine/` (a staging directory of *another* log is refused, untouched); then
/// recovers with [`TailRule::FirstBreak`]: the log ends at its first break wherever it is,
/// and everything after it is moved to `quarantine/` (a file cut at the break is copied
/// there first). With `dry_run` nothing changes and the report says what would.
pub fn repair_with(dir: &Path, dry_run: bool, staging_base: &Path) -> Result<Recovered> {
    let _lock = crate::io::lock_dir(dir)?;
    let mut actions = Vec::new();
    let mut replayed = 0;
    if let Some(staging) = StagingDir::existing(staging_base, dir)? {
        let buffers = staging.buffer_names()?;
        if dry_run {
            if !buffers.is_empty() {
                log::info!(
                    "{}: {} staging buffers would be applied (or quarantined) first",
                    staging.path().display(),
                    buffers.len()
                );
            }
        } else {
            match replay(&staging, dir, None) {
                Ok(r) => {
                    replayed = r.records;
                    actions.extend(r.actions.into_iter().map(Action::from));
                }
                Err(Error::Staging { path, why }) => {
                    log::warn!(
                        "{}: {why}; moving the buffers to quarantine",
                        path.display()
                    );
                    for name in &buffers {
                        let from = staging.path().join(name);
                        let to = quarantine_copy(dir, &from)?;
                        actions.push(Action::Quarantined { from, to });
                    }
                }
                Err(e) => return Err(e),
            }
            staging.remove_all()?;
        }
    }
    let mut r = recover_with(
        dir,
        RecoverOptions {
            rule: TailRule::FirstBreak,
            dry_run,
            full_scan: true,
            faults: None,
        },
    )?;
    actions.append(&mut r.actions);
    r.actions = actions;
    r.replayed_records = replayed;
    Ok(r)
}

/// Copies a staging buffer (on tmpfs) into the log's `quarantine/` (synced), never over a
/// file already there.
fn quarantine_copy(dir: &Path, from: &Path) -> Result<PathBuf> {
    let q = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&q).map_err(|e| Error::io("mkdir", &q, e))?;
    let name = format!(
        "staging-{}",
        from.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut to = q.join(&name);
    let mut n = 1;
    while to.exists() {
        to = q.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::copy(from, &to).map_err(|e| Error::io("copy", from, e))?;
    std::fs::File::open(&to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync", &to, e))?;
    crate::io::sync_dir(&q)?;
    crate::io::sync_dir(dir)?;
    Ok(to)
}
