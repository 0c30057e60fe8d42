//! The staging directory: a subdirectory of a tmpfs (`/dev/shm` by default) named from the
//! log directory's identity, private to the recorder's user, locked while a recorder uses
//! it, and tagged with the identity of the log it stages for. `/dev/shm` is shared by every
//! user of the machine, so everything here is opened relative to a checked directory fd with
//! `O_NOFOLLOW`, and a directory that is a symlink, owned by someone else or writable by
//! group or others is refused.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `statfs.f_type` of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Name of the file that says which log a staging directory belongs to.
const IDENTITY: &str = "log-identity";

/// An open, checked staging directory.
pub struct StagingDir {
    path: PathBuf,
    /// The directory, opened with `O_NOFOLLOW`; everything inside is opened relative to it.
    fd: File,
    /// Group allowed to read (tailers), if any.
    group: Option<u32>,
}

/// How the staging directory of a log is found: its parent and its name.
fn location(base: &Path, log_dir: &Path) -> Result<(PathBuf, String, String)> {
    let meta = std::fs::metadata(log_dir).map_err(|e| Error::io("stat", log_dir, e))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or("-".to_string(), |d| {
            format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
        });
    // The birth time too: a log directory deleted and made again (same inode) gets a new
    // staging directory, never the old one's buffers.
    let name = format!(
        "wal-recorder-{uid}-{:x}-{}-{}",
        meta.dev(),
        meta.ino(),
        born.replace('.', "")
    );
    let canonical =
        std::fs::canonicalize(log_dir).map_err(|e| Error::io("realpath", log_dir, e))?;
    let identity = format!(
        "dev {:x} ino {} born {born} path {}\n",
        meta.dev(),
        meta.ino(),
        canonical.display()
    );
    Ok((base.join(&name), name, identity))
}

fn cstr(s: &str, path: &Path) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Staging {
        path: path.to_path_buf(),
        why: "name contains a NUL byte".into(),
    })
}

fn refuse(path: &Path, why: impl Into<String>) -> Error {
    Error::Staging {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Opens `base` and checks it is a tmpfs directory.
fn open_base(base: &Path) -> Result<File> {
    let c = CString::new(base.as_os_str().as_bytes()).map_err(|_| refuse(base, "NUL in path"))?;
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(refuse(
            base,
            format!("cannot open the staging parent directory ({e}); is a tmpfs mounted there? (or use WritePath::Direct)"),
        ));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let f = unsafe { File::from_raw_fd(fd) };
    // SAFETY: statfs is plain data, filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::io("statfs", base, std::io::Error::last_os_error()));
    }
    if st.f_type as i64 != TMPFS_MAGIC {
        return Err(refuse(
            base,
            "is not a tmpfs: staging buffers must live in memory that is never written back (mount a tmpfs, or use WritePath::Direct)",
        ));
    }
    Ok(f)
}

/// `openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)` as a `File`.
pub(crate) fn open_at(
    dirfd: RawFd,
    name: &CString,
    flags: i32,
    mode: u32,
) -> std::io::Result<File> {
    // SAFETY: a valid C string and directory fd; the result is checked.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Where the staging directory of `log_dir` under `base` is (whether or not it exists).
pub fn staging_path(base: &Path, log_dir: &Path) -> Result<PathBuf> {
    Ok(location(base, log_dir)?.0)
}

impl StagingDir {
    /// Creates (or opens, after a crash) the staging directory of `log_dir` under `base`,
    /// checks it, locks it and checks (or writes) its log identity.
    pub fn create(base: &Path, log_dir: &Path, group: Option<u32>) -> Result<Self> {
        let basefd = open_base(base)?;
        let (path, name, identity) = location(base, log_dir)?;
        let cname = cstr(&name, &path)?;
        let mode = if group.is_some() { 0o750 } else { 0o700 };
        // SAFETY: valid fd and C string.
        if unsafe { libc::mkdirat(basefd.as_raw_fd(), cname.as_ptr(), mode) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::io("mkdir", &path, e));
            }
        }
        let dir = Self::open_checked(&basefd, &cname, path, group)?;
        if let Some(gid) = group {
            // SAFETY: valid fd; -1 keeps the owner.
            if unsafe { libc::fchown(dir.fd.as_raw_fd(), u32::MAX, gid) } != 0 {
                return Err(Error::io(
                    "chown",
                    &dir.path,
                    std::io::Error::last_os_error(),
                ));
            }
        }
        dir.lock()?;
        dir.check_identity(&identity, true)?;
        Ok(dir)
    }

    /// Opens the staging directory of `log_dir` under `base` if there is one (a Direct-mode
    /// recorder or a tool replaying what a Staged one left), checked and locked; `None` if
    /// there is none.
    pub fn existing(base: &Path, log_dir: &Path) -> Result<Option<Self>> {
        let Ok(basefd) = File::open(base) else {
            return Ok(None);
        };
        let (path, name, identity) = location(base, log_dir)?;
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let cname = cstr(&name, &path)?;
        let dir = Self::open_checked(&basefd, &cname, path, None)?;
        dir.lock()?;
        dir.check_identity(&identity, false)?;
        Ok(Some(dir))
    }

    fn open_checked(
        base: &File,
        name: &CString,
        path: PathBuf,
        group: Option<u32>,
    ) -> Result<Self> {
        let fd = open_at(
            base.as_raw_fd(),
            name,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                refuse(&path, "is a symlink or not a directory; refused")
            }
            _ => Error::io("open", &path, e),
        })?;
        let meta = fd.metadata().map_err(|e| Error::io("stat", &path, e))?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(refuse(
                &path,
                format!(
                    "owned by uid {}, not by this user (uid {me}); refused",
                    meta.uid()
                ),
            ));
        }
        let perm = meta.mode() & 0o777;
        if perm & 0o022 != 0 {
            return Err(refuse(
                &path,
                format!("mode {perm:o} is writable by group or others; refused"),
            ));
        }
        if perm & 0o007 != 0 {
            return Err(refuse(
                &path,
                format!("mode {perm:o} is readable by others; refused"),
            ));
        }
        Ok(StagingDir { path, fd, group })
    }

    fn lock(&self) -> Result<()> {
        match crate::io::flock_exclusive(self.fd.as_raw_fd()) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                Err(Error::Locked(self.path.clone()))
            }
            Err(e) => Err(Error::io("flock", &self.path, e)),
        }
    }

    /// Compares the identity file with `identity`; writes it when absent and `write` is set
    /// and the directory holds no buffer (buffers without an identity are not ours to apply).
    fn check_identity(&self, identity: &str, write: bool) -> Result<()> {
        let name = cstr(IDENTITY, &self.path)?;
        let ipath = self.path.join(IDENTITY);
        match open_at(self.fd.as_raw_fd(), &name, libc::O_RDONLY, 0) {
            Ok(mut f) => {
                let mut found = String::new();
                f.read_to_string(&mut found)
                    .map_err(|e| Error::io("read", &ipath, e))?;
                if found != identity {
                    let owner = found
                        .split_once(" path ")
                        .map_or("that log".to_string(), |(_, p)| p.trim().to_string());
                    return Err(refuse(
                        &self.path,
                        format!(
                            "belongs to another log ({}), not to this one ({}); refused, nothing applied. Its buffers may hold the only copy of records of {owner} that never reached its disk: apply them with `walctl repair {owner}` (it applies what continues that log and moves the rest into its quarantine/); if that log was moved or restored, copy this directory somewhere safe before removing it",
                            found.trim(),
                            identity.trim()
                        ),
                    ));
                }
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !self.buffer_names()?.is_empty() {
                    return Err(refuse(
                        &self.path,
                        "holds staging buffers but no log identity; refused, nothing applied",
                    ));
                }
                if write {
                    let mut f = open_at(
                        self.fd.as_raw_fd(),
                        &name,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )
                    .map_err(|e| Error::io("create", &ipath, e))?;
                    f.write_all(identity.as_bytes())
                        .map_err(|e| Error::io("write", &ipath, e))?;
                }
                Ok(())
            }
            Err(e) => Err(Error::io("open", &ipath, e)),
        }
    }

    /// Names of the buffer files present (`buf-*`), sorted.
    pub(crate) fn buffer_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let rd = std::fs::read_dir(&self.path).map_err(|e| Error::io("read_dir", &self.path, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("read_dir", &self.path, e))?;
            if let Some(n) = entry.file_name().to_str() {
                if n.starts_with("buf-") {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens an existing buffer read-only, refusing a link or a file of another owner.
    pub(crate) fn open_buffer(&self, name: &str) -> Result<File> {
        let path = self.path.join(name);
        let f =
            open_at(self.fd.as_raw_fd(), &cstr(name, &path)?, libc::O_RDONLY, 0).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::ELOOP) => refuse(&path, "is a symlink; refused"),
                    _ => Error::io("open", &path, e),
                }
            })?;
        let meta = f.metadata().map_err(|e| Error::io("stat", &path, e))?;
        // SAFETY: geteuid has no preconditions.
        if !meta.is_file() || meta.uid() != unsafe { libc::geteuid() } {
            return Err(refuse(&path, "not a regular file of this user; refused"));
        }
        Ok(f)
    }

    /// Creates buffer `name` (`O_EXCL`, mode `0600`, or `0640` with a reader group) and
    /// allocates `len` bytes of tmpfs for it: a full tmpfs fails here, never later.
    pub fn create_buffer(&self, name: &str, len: u64) -> Result<File> {
        let path = self.path.join(name);
        let mode = if self.group.is_some() { 0o640 } else { 0o600 };
        let f = open_at(
            self.fd.as_raw_fd(),
            &cstr(name, &path)?,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            mode,
        )
        .map_err(|e| Error::io("create", &path, e))?;
        if let Some(gid) = self.group {
            // SAFETY: valid fd; -1 keeps the owner.
            if unsafe { libc::fchown(f.as_raw_fd(), u32::MAX, gid) } != 0 {
                return Err(Error::io("chown", &path, std::io::Error::last_os_error()));
            }
        }
        // SAFETY: plain syscall on an fd we own.
        if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = self.remove(name);
            return Err(Error::io("fallocate (staging tmpfs)", &path, e));
        }
        Ok(f)
    }

    /// Removes `name` from the directory.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.path.join(name);
        let c = cstr(name, &path)?;
        // SAFETY: valid fd and C string.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(Error::io("unlink", &path, e));
            }
        }
        Ok(())
    }

    /// Removes every buffer, the identity and the directory itself: what a clean close does
    /// once everything is durable on disk.
    pub(crate) fn remove_all(self) -> Result<()> {
        for name in self.buffer_names()? {
            self.remove(&name)?;
        }
        self.remove(IDENTITY)?;
        std::fs::remove_dir(&self.path).map_err(|e| Error::io("rmdir", &self.path, e))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
