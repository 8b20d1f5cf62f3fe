//! A raw `NETLINK_SOCK_DIAG` socket: the only unsafe code of the module, each call a thin libc wrapper.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::wire::NETLINK_SOCK_DIAG;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    pub fn open() -> io::Result<NetlinkSocket> {
        // SAFETY: plain syscall; the returned descriptor is owned by nobody else.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that we alone own.
        Ok(NetlinkSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn set_option<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
        // SAFETY: value points to a live T and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Bounds every blocking `recv`, so a dump cannot hang on a kernel that stops answering.
    pub fn set_receive_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        self.set_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// Asks for `bytes` of receive buffer: SO_RCVBUFFORCE passes rmem_max but needs CAP_NET_ADMIN,
    /// so without it we settle for SO_RCVBUF (capped at net.core.rmem_max).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
            .or_else(|_| self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
    }

    /// Binds to a port id the kernel picks. Multicast needs it: the kernel skips members whose port
    /// id equals the sender's, and an unbound socket has port id 0, the kernel's own.
    pub fn bind(&self) -> io::Result<()> {
        let local = netlink_address();
        // SAFETY: local is live for the call and the length is its size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&local as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Attaches a classic BPF program (replacing any earlier one at once, so no datagram passes
    /// unfiltered in between). Needs no privilege; the kernel copies the program.
    pub fn attach_filter(&self, program: &[libc::sock_filter]) -> io::Result<()> {
        let program_len = u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
        let fprog = libc::sock_fprog {
            len: program_len,
            // The kernel only reads through this pointer.
            filter: program.as_ptr().cast_mut(),
        };
        self.set_option(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
    }

    /// Removes the filter: every datagram is queued again.
    pub fn detach_filter(&self) -> io::Result<()> {
        match self.set_option(libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &0 as &libc::c_int) {
            // ENOENT: there was none.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    pub fn join_group(&self, group: u32) -> io::Result<()> {
        self.set_option(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group)
    }

    /// Sends one request to the kernel (port id 0).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let kernel = netlink_address();
        loop {
            // SAFETY: bytes and kernel are live for the call, lengths match.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            match rc {
                n if n >= 0 && n as usize == bytes.len() => return Ok(()),
                n if n >= 0 => return Err(io::Error::other("netlink request sent in part")),
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Receives one datagram into `buf` and returns its length. A datagram longer than `buf` is an
    /// `InvalidData` error rather than silently cut. A timeout is `WouldBlock` or `TimedOut`.
    pub fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
        // MSG_TRUNC makes the kernel return the datagram's real length.
        let flags = libc::MSG_TRUNC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: buf is live and writable for buf.len() bytes.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if rc >= 0 {
                let len = rc as usize;
                if len > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "netlink datagram of {len} bytes exceeds the {}-byte buffer",
                            buf.len()
                        ),
                    ));
                }
                return Ok(len);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Waits until a datagram (or an error such as ENOBUFS) is pending, at most `timeout`.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        Ok(self.poll(libc::POLLIN, timeout)? != 0)
    }

    /// Waits until a socket error (such as ENOBUFS) is pending, without consuming anything.
    #[cfg(test)]
    pub fn wait_error(&self, timeout: Duration) -> io::Result<bool> {
        Ok(self.poll(0, timeout)? & libc::POLLERR != 0)
    }

    /// poll(2) on this socket alone; returns the ready events, 0 on timeout.
    fn poll(&self, events: libc::c_short, timeout: Duration) -> io::Result<libc::c_short> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up, so a sub-millisecond wait does not become a busy loop.
            let millis = left
                .as_micros()
                .div_ceil(1000)
                .min(libc::c_int::MAX as u128) as libc::c_int;
            let mut pollfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
            if rc >= 0 {
                return Ok(if rc == 0 { 0 } else { pollfd.revents });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Port id 0 and no groups: the kernel as a destination, "pick one for me" for bind.
fn netlink_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address
}
