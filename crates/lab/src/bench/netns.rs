//! A network namespace of the bench's own, so the exporter's socket dump sees the bench's
//! sockets and nothing else, as a sidecar in a pod sees only its pod's.
//!
//! On a shared machine the default namespace holds every other engineer's sockets (thousands,
//! changing during a run), and an unfiltered dump pays for each of them: figures taken there
//! measure the neighbours. Creating a namespace needs CAP_SYS_ADMIN; without it the bench
//! says so and measures in the shared namespace.

use std::io;

use anyhow::{Context, Result};

/// Moves the calling thread (and every thread and child it starts afterwards) into a new
/// network namespace with its loopback interface up. Call it before starting any thread:
/// threads started earlier stay in the old namespace.
pub fn enter_own() -> Result<()> {
    // SAFETY: unshare has no memory-safety preconditions.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error()).context("unshare(CLONE_NEWNET)");
    }
    loopback_up().context("bringing lo up in the new network namespace")
}

fn loopback_up() -> Result<()> {
    // SAFETY: a plain datagram socket, closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_INET, SOCK_DGRAM)");
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own; fd is ours.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) != 0 {
            Err(io::Error::last_os_error()).context("SIOCGIFFLAGS lo")
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) != 0 {
                Err(io::Error::last_os_error()).context("SIOCSIFFLAGS lo up")
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
}
