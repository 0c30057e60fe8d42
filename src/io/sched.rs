//! Scheduling of background threads.

/// Puts the calling thread (and the threads it creates later, which inherit the policy) in
/// `SCHED_IDLE`: it runs only when its core has nothing else to run, so bulk work such as
/// archive uploads never delays the maintainer on a shared core.
pub(crate) fn set_idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid struct that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Lowers the calling thread's nice value to `nice` (it stays `SCHED_OTHER`): on a shared
/// core it yields to normal threads almost always, yet still gets a share when every core is
/// busy, where `SCHED_IDLE` would starve it.
pub(crate) fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only that thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_can_lower_its_own_nice_value_only() {
        std::thread::spawn(|| {
            super::set_nice(10).unwrap();
            // SAFETY: getpriority of the calling thread (who 0).
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 10);
        })
        .join()
        .unwrap();
        // SAFETY: as above; this thread was not changed.
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 0);
    }

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
