//! The recorder's exclusive hold on its directory.

/// Opens `dir` and takes an exclusive, non-blocking `flock` on it, held as long as the
/// returned handle lives. A second holder gets [`crate::Error::Locked`]. Nothing is created
/// in the directory (contract 1: only our segment files live there).
pub(crate) fn lock_dir(dir: &std::path::Path) -> crate::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).map_err(|e| crate::Error::io("open dir", dir, e))?;
    if !f
        .metadata()
        .map_err(|e| crate::Error::io("stat", dir, e))?
        .is_dir()
    {
        return Err(crate::Error::io(
            "open dir",
            dir,
            std::io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    match flock_exclusive(f.as_raw_fd()) {
        Ok(()) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            Err(crate::Error::Locked(dir.to_path_buf()))
        }
        Err(e) => Err(crate::Error::io("flock", dir, e)),
    }
}

/// An exclusive, non-blocking `flock` on `fd`, retried for up to 100 ms while it is
/// refused: a lock released by a closed handle can stay held for a moment by a copy of the
/// descriptor in a child another thread is spawning (between its fork and its exec, which
/// closes it); a real second holder is still refused after that. `EWOULDBLOCK` then.
pub(crate) fn flock_exclusive(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        // SAFETY: flock on a descriptor the caller owns; no pointers.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || std::time::Instant::now() > deadline {
            return Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
