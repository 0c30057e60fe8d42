//! The recorder's exclusive hold on its directory.

/// Opens `dir` and takes an exclusive, non-blocking `flock` on it, held as long as the
/// returned handle lives. A second holder gets [`crate::Error::Locked`]. Nothing is created
/// in the directory (contract 1: only our segment files live there).
pub fn lock_dir(dir: &std::path::Path) -> crate::Result<std::fs::File> {
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
    // SAFETY: flock on an fd we own; no pointers.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(crate::Error::Locked(dir.to_path_buf()));
        }
        return Err(crate::Error::io("flock", dir, e));
    }
    Ok(f)
}
