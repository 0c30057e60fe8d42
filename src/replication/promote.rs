//! Promotion (contract 11): a follower's log becomes a leader of a new epoch. The decision
//! is an operator's or an external coordinator's (docs/REPLICATION.md, "Avoiding two
//! leaders"); this only records it durably, so that every follower that sees the new epoch
//! refuses the old leader from then on.

use std::path::Path;

use super::epochs::{ReplicaState, Role};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::recorder::{OpenAs, Recorder};

/// Makes the follower's log in `dir` a leader of a new epoch (its epochs file: role leader,
/// a new epoch starting at its next record); returns the epoch. The directory must not be
/// in use (a running follower holds its lock: stop it, or use
/// [`super::Follower::promote`]). The log is recovered first (its staging buffers applied,
/// with the default staging directory), so the epoch starts exactly after its last record.
pub fn promote(dir: &Path) -> Result<u64> {
    promote_with(dir, Config::new(dir))
}

/// [`promote`] with the follower's own recorder configuration (its staging directory).
pub fn promote_with(dir: &Path, config: Config) -> Result<u64> {
    let lock = crate::io::lock_dir(dir)?;
    let state = match ReplicaState::load(dir)? {
        Some(s) if s.role == Role::Follower => s,
        Some(s) => {
            return Err(Error::Config(format!(
                "{}: already the leader of epoch {}",
                dir.display(),
                s.epoch()
            )))
        }
        None => {
            return Err(Error::Config(format!(
                "{}: not a follower's log (no epochs file)",
                dir.display()
            )))
        }
    };
    if state.log_id == 0 {
        return Err(Error::Config(format!(
            "{}: this follower never reached a leader: there is no log to lead",
            dir.display()
        )));
    }
    let dup = lock.try_clone().map_err(|e| Error::io("dup", dir, e))?;
    let mut r = Recorder::open_as(
        dir,
        config,
        OpenAs::Follower {
            lock: dup,
            start: None,
        },
    )?;
    let next = r.last_seq() + 1;
    r.shutdown()?;
    drop(r);
    let new = state.promoted(next);
    new.store(dir)?;
    log::warn!(
        "{}: promoted: leader of epoch {} from record {next}",
        dir.display(),
        new.epoch()
    );
    drop(lock);
    Ok(new.epoch())
}
