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

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
