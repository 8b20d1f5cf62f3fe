//! Per-socket TCP byte counters from the kernel (netlink sock_diag), unprivileged, in our network namespace.
//!
//! Two feeds: [`SockDiag::dump`] lists open sockets, [`DestroyListener::recv`] delivers the final
//! counters of freed ones, which a dump can never see. Written on raw libc netlink; no netlink crate.
//! Only the caller's network namespace is visible, so the sidecar must share the relay's.

mod bpf;
mod destroy;
mod dump;
mod filter;
mod netlink;
mod socket;
mod wire;

// The parser is public so that it can be fuzzed.
pub use self::{
    destroy::{DestroyFilter, DestroyListener},
    dump::SockDiag,
    filter::{compile_bytecode, PortFilter},
    socket::{TcpSocket, TcpState},
    wire::{parse_messages, Parsed},
};

/// Helpers for tests here and in other modules.
#[cfg(test)]
pub(crate) mod testing {
    /// Raises the soft limit on open files to the hard one (tests holding thousands of sockets)
    /// and returns it.
    pub fn raise_open_files_limit() -> u64 {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: limit is a valid rlimit to fill, then to set.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        limit.rlim_cur
    }

    /// A deterministic spread of ports from `seed` (xorshift): thousands of ports, cheaply.
    pub fn spread(n: usize, seed: u64) -> Vec<u16> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u16
            })
            .collect()
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
