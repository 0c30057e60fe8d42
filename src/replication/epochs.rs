//! `ReplicaState`: the file `epochs` in a replicated log's directory (docs/REPLICATION.md,
//! "Epochs"): which log this is, whether this copy leads or follows, and the epochs of its
//! history. Written whole to `epochs.tmp`, fsynced, renamed over `epochs`, directory
//! fsynced: a crash leaves the old or the new file, never a mix.
//!
//! ```text
//! wal-recorder epochs 1
//! log 3f2a…(32 hex digits)
//! role leader
//! epoch 1 from 1
//! epoch 2 from 9051
//! crc 0x1a2b3c4d          CRC32C of every byte before this line
//! ```

// Without the feature a recorder only reads the file (to refuse a follower's log).
#![cfg_attr(not(feature = "replication"), allow(dead_code))]

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The state file's name, in the log directory.
pub const EPOCHS_FILE: &str = "epochs";
const TMP_FILE: &str = "epochs.tmp";
const FIRST_LINE: &str = "wal-recorder epochs 1";
/// Epochs kept in the file and sent in a welcome (a promotion a day for most of a year);
/// older ones never decide a rejoin.
pub(crate) const MAX_HISTORY: usize = 256;

/// One epoch of the log: from `start_seq` on, records were written by this epoch's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    /// The epoch number (1 for a log never promoted).
    pub epoch: u64,
    /// The first sequence number written in this epoch.
    pub start_seq: u64,
}

/// Whether a file name in a log directory is the epochs file or its temporary.
pub(crate) fn is_epochs_file(name: &str) -> bool {
    name == EPOCHS_FILE || name == TMP_FILE
}

/// What this copy of the log does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It takes appends and ships them.
    Leader,
    /// It takes records from a leader only.
    Follower,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// The log's identity, shared by its leader and followers (random, made by the first
    /// leader).
    pub log_id: u128,
    /// This copy's role.
    pub role: Role,
    /// The epochs, oldest first; empty for a follower that never reached a leader.
    pub history: Vec<EpochStart>,
}

impl ReplicaState {
    /// A log's first leader: a new identity, epoch 1 from the first record.
    pub(crate) fn first_leader() -> Result<Self> {
        Ok(ReplicaState {
            log_id: random_id()?,
            role: Role::Leader,
            history: vec![EpochStart {
                epoch: 1,
                start_seq: 1,
            }],
        })
    }

    /// The current epoch (0 for a follower that never reached a leader).
    pub fn epoch(&self) -> u64 {
        self.history.last().map_or(0, |e| e.epoch)
    }

    /// This copy made a leader of a new epoch whose first record will be `next_seq`.
    pub(crate) fn promoted(&self, next_seq: u64) -> Self {
        let mut history = self.history.clone();
        let epoch = self.epoch() + 1;
        history.push(EpochStart {
            epoch,
            start_seq: next_seq,
        });
        let drop = history.len().saturating_sub(MAX_HISTORY);
        history.drain(..drop);
        ReplicaState {
            log_id: self.log_id,
            role: Role::Leader,
            history,
        }
    }

    /// Where a follower whose newest epoch is `epoch` and whose log ends before `next_seq`
    /// parts from this history: its records from there on were written by a leader of an
    /// older epoch after this log's later epoch began, so they are not this log's.
    pub(crate) fn divergence(&self, epoch: u64, next_seq: u64) -> u64 {
        match self.history.iter().find(|e| e.epoch > epoch) {
            Some(later) => next_seq.min(later.start_seq),
            None => next_seq,
        }
    }

    /// The state file of `dir`, if it has one.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(EPOCHS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|message| Error::ReplicaState {
                path: path.clone(),
                message,
            })
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let body_end = text
            .rfind("crc ")
            .ok_or_else(|| "no checksum line".to_string())?;
        let (body, crc_line) = text.split_at(body_end);
        let crc = crc_line
            .trim()
            .strip_prefix("crc 0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad checksum line {crc_line:?}"))?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return Err("checksum mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(FIRST_LINE) {
            return Err("not a wal-recorder epochs file (first line)".into());
        }
        let mut log_id = None;
        let mut role = None;
        let mut history: Vec<EpochStart> = Vec::new();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["log", id] => {
                    log_id = Some(u128::from_str_radix(id, 16).map_err(|_| "bad log id")?)
                }
                ["role", "leader"] => role = Some(Role::Leader),
                ["role", "follower"] => role = Some(Role::Follower),
                ["epoch", e, "from", s] => {
                    let e = EpochStart {
                        epoch: e.parse().map_err(|_| format!("bad epoch {e}"))?,
                        start_seq: s.parse().map_err(|_| format!("bad seq {s}"))?,
                    };
                    if history
                        .last()
                        .is_some_and(|p| e.epoch <= p.epoch || e.start_seq < p.start_seq)
                    {
                        return Err(format!("epoch {} out of order", e.epoch));
                    }
                    history.push(e);
                }
                _ => return Err(format!("unknown line {line:?}")),
            }
        }
        let state = ReplicaState {
            log_id: log_id.ok_or("no log line")?,
            role: role.ok_or("no role line")?,
            history,
        };
        if state.role == Role::Leader && state.history.is_empty() {
            return Err("a leader without an epoch".into());
        }
        Ok(state)
    }

    fn render(&self) -> String {
        let mut s = format!("{FIRST_LINE}\nlog {:032x}\n", self.log_id);
        s += match self.role {
            Role::Leader => "role leader\n",
            Role::Follower => "role follower\n",
        };
        for e in &self.history {
            s += &format!("epoch {} from {}\n", e.epoch, e.start_seq);
        }
        let crc = crc32c::crc32c(s.as_bytes());
        s + &format!("crc {crc:#010x}\n")
    }

    /// Writes the state durably (module docs).
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let tmp: PathBuf = dir.join(TMP_FILE);
        let path = dir.join(EPOCHS_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(self.render().as_bytes())
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        crate::io::sync_dir(dir)
    }
}

/// 128 random bits from the kernel.
fn random_id() -> Result<u128> {
    let mut b = [0u8; 16];
    // SAFETY: `b` is 16 writable bytes for the duration of the call.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 16 {
        return Err(Error::io(
            "getrandom",
            Path::new(EPOCHS_FILE),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(u128::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_any_altered_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ReplicaState::first_leader().unwrap();
        let state = first.promoted(90).promoted(120);
        assert_eq!(state.epoch(), 3);
        state.store(dir.path()).unwrap();
        assert_eq!(ReplicaState::load(dir.path()).unwrap(), Some(state.clone()));
        let path = dir.path().join(EPOCHS_FILE);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(ReplicaState::load(dir.path()).is_err(), "byte {i} altered");
        }
    }

    #[test]
    fn divergence_is_where_a_later_epoch_began() {
        let s = ReplicaState::first_leader()
            .unwrap()
            .promoted(91)
            .promoted(200);
        // The old leader of epoch 1 wrote up to 100; epoch 2 began at 91.
        assert_eq!(s.divergence(1, 101), 91);
        // It had not reached the boundary: nothing of it is set aside.
        assert_eq!(s.divergence(1, 50), 50);
        // A follower of epoch 2 that went on to 150: epoch 3 began at 200, nothing diverges.
        assert_eq!(s.divergence(2, 150), 150);
        assert_eq!(s.divergence(2, 250), 200);
        assert_eq!(s.divergence(3, 250), 250);
    }
}
