//! The forgetting disk (test support): a model of what a power cut may leave of the files the
//! maintainer writes, in the manner of redb's test backend and LazyFS. The operations still
//! run for real (the live image is the real directory); alongside, every operation through
//! the fault backend is logged with its data, so that for any crash point a *durable image*
//! can be materialized into another directory:
//!
//! - the directory as it was at the first operation (everything before it was synced by the
//!   open), then
//! - a write (or truncate) is durable once an fdatasync of the same file (by inode) ran after
//!   it; one not yet covered is *pending*: any subset of its 512-byte sectors may have reached
//!   the disk (the caller's `seed` picks one),
//! - a create, rename or unlink is durable only once an fsync of the directory ran after it;
//!   until then it never happened,
//! - the staging buffers (tmpfs) are gone.
//!
//! `durable_before(n)` is the `durable_seq` the recorder had published when operation `n`
//! started: a state cut after `n` operations must hold every record up to it.
//!
//! `forget(code, target)` drops one kind of operation from the model as if the code never
//! issued it (the syscall still runs): the mutation with which a test proves that the model
//! catches a missing fdatasync or directory fsync.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Op, OpCode, Target};

const SECTOR: usize = 512;

/// Reads the recorder's `durable_seq`.
type DurableProbe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// (device, inode): a file's identity across renames.
type Ino = (u64, u64);

#[derive(Debug, Clone)]
enum Event {
    /// A file first seen (created outside the backend: prepare, the freeze's tmp file).
    Create {
        ino: Ino,
        name: String,
        len: u64,
    },
    Write {
        ino: Ino,
        offset: u64,
        data: Vec<u8>,
    },
    Truncate {
        ino: Ino,
        len: u64,
    },
    Sync {
        ino: Ino,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        name: String,
    },
    SyncDir,
}

#[derive(Default)]
struct State {
    dir: Option<PathBuf>,
    /// The directory at the first operation: name → (inode, bytes).
    base: BTreeMap<String, (Ino, Vec<u8>)>,
    /// The live namespace as the model knows it: a file whose inode is not in it is new
    /// (inode numbers are reused after an unlink, so this follows renames and unlinks).
    live: HashMap<String, Ino>,
    events: Vec<Event>,
    /// `durable_seq` when operation `n` started.
    durable_at: Vec<u64>,
    /// Event count when operation `n` started.
    events_at: Vec<usize>,
    forgotten: Vec<(OpCode, Target)>,
}

/// See the module docs. Cloned handles share one model.
#[derive(Clone, Default)]
pub struct ForgettingDisk {
    state: Arc<Mutex<State>>,
    durable: Arc<Mutex<Option<DurableProbe>>>,
}

impl std::fmt::Debug for ForgettingDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ForgettingDisk({} operations)", self.operations())
    }
}

fn ino_of_fd(fd: i32) -> Option<(Ino, u64, PathBuf)> {
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    // SAFETY: fstat into a zeroed struct on a descriptor the caller holds open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(((st.st_dev, st.st_ino), st.st_size as u64, path))
}

fn name_of(p: *const libc::c_char) -> String {
    // SAFETY: the op's contract: a valid C string while the operation is in flight.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    Path::new(&*s)
        .file_name()
        .map_or(s.to_string(), |n| n.to_string_lossy().into_owned())
}

impl ForgettingDisk {
    /// A model of the log directory `dir` (the directory whose files the operations touch).
    pub fn new(dir: &Path) -> Self {
        let d = ForgettingDisk::default();
        d.state.lock().expect("disk lock").dir = Some(dir.to_path_buf());
        d
    }

    /// Drops operations of `code` on `target` from the model (a mutation: see module docs).
    pub fn forget(&self, code: OpCode, target: Target) {
        self.state
            .lock()
            .expect("disk lock")
            .forgotten
            .push((code, target));
    }

    /// Where the model reads `durable_seq` (the recorder sets it).
    pub(crate) fn watch_durable(&self, f: DurableProbe) {
        *self.durable.lock().expect("disk lock") = Some(f);
    }

    /// Operations logged.
    pub fn operations(&self) -> usize {
        self.state.lock().expect("disk lock").events_at.len()
    }

    /// Files created, renamed and unlinked in the run: what its crash points cover.
    pub fn namespace_changes(&self) -> (usize, usize, usize) {
        let st = self.state.lock().expect("disk lock");
        let count = |f: fn(&Event) -> bool| st.events.iter().filter(|e| f(e)).count();
        (
            count(|e| matches!(e, Event::Create { .. })),
            count(|e| matches!(e, Event::Rename { .. })),
            count(|e| matches!(e, Event::Unlink { .. })),
        )
    }

    /// The `durable_seq` published when operation `n` started (for `n` = the count: now).
    pub fn durable_before(&self, n: usize) -> u64 {
        let st = self.state.lock().expect("disk lock");
        match st.durable_at.get(n) {
            Some(&d) => d,
            None => self
                .durable
                .lock()
                .expect("disk lock")
                .as_ref()
                .map_or(0, |f| f()),
        }
    }

    /// Called by the backend before it runs `op`.
    pub(crate) fn before(&self, op: &Op) -> Option<Ino> {
        let durable = self
            .durable
            .lock()
            .expect("disk lock")
            .as_ref()
            .map_or(0, |f| f());
        let mut st = self.state.lock().expect("disk lock");
        if st.events_at.is_empty() {
            st.snapshot();
        }
        st.durable_at.push(durable);
        let at = st.events.len();
        st.events_at.push(at);
        match op.code {
            // The inode a rename or unlink will act on, looked up before it runs.
            OpCode::Rename | OpCode::Unlink => None,
            _ => {
                let (ino, len, path) = ino_of_fd(op.fd)?;
                if op.code != OpCode::Fsync && !st.is_live(ino) {
                    let name = path.file_name()?.to_string_lossy().into_owned();
                    st.live.insert(name.clone(), ino);
                    st.events.push(Event::Create { ino, name, len });
                }
                Some(ino)
            }
        }
    }

    /// Called by the backend after `op` ran with `result`.
    pub(crate) fn after(&self, op: &Op, ino: Option<Ino>, result: i32) {
        let mut st = self.state.lock().expect("disk lock");
        if result < 0 || st.forgotten.contains(&(op.code, op.target)) {
            return;
        }
        let event = match (op.code, ino) {
            (OpCode::Write, Some(ino)) => {
                // SAFETY: the op's contract: `buf` is valid for `len` bytes until its
                // completion, which is after this call.
                let data = unsafe { std::slice::from_raw_parts(op.buf, result as usize) };
                Event::Write {
                    ino,
                    offset: op.offset,
                    data: data.to_vec(),
                }
            }
            (OpCode::Ftruncate, Some(ino)) => Event::Truncate {
                ino,
                len: op.offset,
            },
            (OpCode::Fdatasync, Some(ino)) => Event::Sync { ino },
            (OpCode::Fsync, _) if op.target == Target::Dir || op.target == Target::Prepare => {
                // An fsync of a directory (the log's); of a file it is a data sync too.
                match ino {
                    Some(ino) if st.is_live(ino) => Event::Sync { ino },
                    _ => Event::SyncDir,
                }
            }
            (OpCode::Fsync, Some(ino)) => Event::Sync { ino },
            (OpCode::Rename, _) => {
                let (from, to) = (name_of(op.path), name_of(op.path2));
                if let Some(ino) = st.live.remove(&from) {
                    st.live.insert(to.clone(), ino);
                }
                Event::Rename { from, to }
            }
            (OpCode::Unlink, _) => {
                let name = name_of(op.path);
                st.live.remove(&name);
                Event::Unlink { name }
            }
            _ => return,
        };
        st.events.push(event);
    }

    /// Writes the durable image of a crash after `n` operations into `out` (an empty
    /// directory); `seed` chooses which sectors of the pending writes reached the disk (0:
    /// none of them).
    pub fn materialize(&self, n: usize, seed: u64, out: &Path) -> std::io::Result<()> {
        let st = self.state.lock().expect("disk lock");
        let cut = st.events_at.get(n).copied().unwrap_or(st.events.len());
        let events = &st.events[..cut];
        // Namespace: durable up to the last directory sync.
        let last_dir_sync = events.iter().rposition(|e| matches!(e, Event::SyncDir));
        let mut names: BTreeMap<String, Ino> = st
            .base
            .iter()
            .map(|(n, (ino, _))| (n.clone(), *ino))
            .collect();
        if let Some(last) = last_dir_sync {
            for e in &events[..last] {
                match e {
                    Event::Create { ino, name, .. } => {
                        names.insert(name.clone(), *ino);
                    }
                    Event::Rename { from, to } => {
                        if let Some(ino) = names.remove(from) {
                            names.insert(to.clone(), ino);
                        }
                    }
                    Event::Unlink { name } => {
                        names.remove(name);
                    }
                    _ => {}
                }
            }
        }
        // Contents: the base (or zeros at creation), synced writes, and the chosen sectors of
        // the pending ones, in order.
        let mut files: HashMap<Ino, Vec<u8>> = st
            .base
            .values()
            .map(|(ino, bytes)| (*ino, bytes.clone()))
            .collect();
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for (i, e) in events.iter().enumerate() {
            let synced = |ino: &Ino| {
                events[i + 1..]
                    .iter()
                    .any(|later| matches!(later, Event::Sync { ino: s } if s == ino))
            };
            match e {
                Event::Create { ino, len, .. } => {
                    files.insert(*ino, vec![0; *len as usize]);
                }
                Event::Write { ino, offset, data } => {
                    let f = files.entry(*ino).or_default();
                    let durable = synced(ino);
                    // All of it, none of it (the usual cases), or a sector subset.
                    let pick = if durable || seed == 0 { 0 } else { next() % 4 };
                    if !durable && (seed == 0 || pick == 0) {
                        continue;
                    }
                    let end = *offset as usize + data.len();
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    for (k, chunk) in data.chunks(SECTOR).enumerate() {
                        if durable || pick == 1 || (pick == 3 && next() % 2 == 0) {
                            let at = *offset as usize + k * SECTOR;
                            f[at..at + chunk.len()].copy_from_slice(chunk);
                        }
                    }
                }
                Event::Truncate { ino, len } if synced(ino) || (seed != 0 && next() % 2 == 0) => {
                    files.entry(*ino).or_default().resize(*len as usize, 0);
                }
                _ => {}
            }
        }
        for (name, ino) in names {
            let bytes = files.get(&ino).map_or(&[][..], |b| &b[..]);
            let f = std::fs::File::create(out.join(&name))?;
            f.write_all_at(bytes, 0)?;
            f.set_len(bytes.len() as u64)?;
        }
        Ok(())
    }
}

impl State {
    fn is_live(&self, ino: Ino) -> bool {
        self.live.values().any(|i| *i == ino)
    }

    /// The directory as the open left it (synced), before the first operation.
    fn snapshot(&mut self) {
        let Some(dir) = self.dir.clone() else { return };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let ino = (meta.dev(), meta.ino());
            self.live.insert(name.clone(), ino);
            self.base.insert(name, (ino, bytes));
        }
    }
}
