//! SIGINT and SIGTERM as a flag: the long-running commands (`tail --follow`, `follow`)
//! stop cleanly and exit 0 when asked to.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the handlers; SIGPIPE is ignored too, so that a closed pipe is an EPIPE write
/// error the command ends on rather than a kill.
pub(crate) fn install() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Whether a stop was asked for.
pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}
