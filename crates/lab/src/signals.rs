//! Ctrl-C and SIGTERM as a flag, so the lab can stop its children in order instead of dying.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs handlers for SIGINT and SIGTERM that set the returned flag.
pub fn install_interrupt_flag() -> anyhow::Result<&'static AtomicBool> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous =
            unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            anyhow::bail!("cannot install a handler for signal {signal}");
        }
    }
    Ok(&INTERRUPTED)
}
