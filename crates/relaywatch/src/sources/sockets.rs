//! The sockets source: kernel byte counters of the relay's peer sockets (sock_diag dump + destroy events).

use std::collections::HashMap;
use std::io;

use crate::sockdiag::{SockDiag, TcpSocket};
use crate::traffic::{ConnKey, SocketSample};

/// Payload counters of one socket; `None` when the kernel gave no tcp_info for it.
pub fn sample(socket: &TcpSocket) -> Option<SocketSample> {
    Some(SocketSample {
        local: socket.local,
        remote: socket.remote,
        cookie: socket.cookie,
        received: socket.payload_received()?,
        sent: socket.payload_sent()?,
    })
}

/// Dumps every TCP socket of the network namespace, keyed by (local, remote).
pub fn dump(diag: &mut SockDiag) -> io::Result<HashMap<ConnKey, SocketSample>> {
    Ok(diag
        .dump()?
        .iter()
        .filter_map(sample)
        .map(|sample| (sample.key(), sample))
        .collect())
}

#[cfg(test)]
mod tests;
