//! Scheduling of background threads.

/// Puts the calling thread (and the threads it creates later, which inherit the policy) in
/// `SCHED_IDLE`: it runs only when its core has nothing else to run, so bulk work such as
/// archive uploads never delays the maintainer on a shared core.
pub fn set_idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid struct that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_can_drop_to_idle_priority() {
        std::thread::spawn(|| {
            super::set_idle_priority().unwrap();
            // SAFETY: pid 0 is the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
