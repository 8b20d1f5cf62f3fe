//! Free loopback ports for tor's listeners, never handed out twice by one process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};

/// Picks a port that is free now, by asking the kernel (bind to port 0).
///
/// The port is released before tor binds it, so another process could take it in between.
/// Two things make that unlikely: the kernel picks from the whole ephemeral range, and Linux
/// prefers odd ports for `bind(0)` but even ones for `connect()`, so tor's own outgoing
/// connections rarely land on a port picked here. The process-wide set stops two networks
/// in one test binary from getting the same port when the kernel reuses a just-freed one.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .context("cannot bind 127.0.0.1:0 to find a free port")?
            .port();
        let mut handed_out = handed_out
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port left that this process has not handed out already")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_within_the_process() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
    }
}
