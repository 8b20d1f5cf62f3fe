//! Dumps the TCP sockets of our network namespace with their counters, all or by port; unprivileged.
//!
//! Both address families in one request where the kernel serves it (see
//! `wire::encode_dump_request_both_families`), else one request per family.

use std::io;
use std::time::Duration;

use super::filter::{self, PortFilter};
use super::netlink::NetlinkSocket;
use super::socket::TcpSocket;
use super::wire;

/// The kernel fills dump datagrams up to 32 KiB (netlink_dump caps its skb there); 64 KiB leaves room.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// A dump of thousands of sockets takes a few milliseconds; 2 s means the kernel is not answering.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A sock_diag client for repeated dumps.
pub struct SockDiag {
    /// Dropped after any error: an abandoned dump keeps the socket busy (EBUSY) and fills it with
    /// stale replies, so a fresh socket is the simplest clean state.
    socket: Option<NetlinkSocket>,
    buf: Vec<u8>,
    seq: u32,
    /// Whether to ask for both families in one request; false once a kernel refused it.
    one_walk: bool,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            socket: Some(open_socket()?),
            buf: vec![0; RECEIVE_BUFFER],
            seq: 0,
            one_walk: true,
        })
    }

    /// Every IPv4 and IPv6 TCP socket except LISTEN, TIME_WAIT and SYN_RECV ones.
    pub fn dump(&mut self) -> io::Result<Vec<TcpSocket>> {
        self.dump_with(None)
    }

    /// The sockets of [`Self::dump`] that `filter` matches (possibly a few more, see
    /// [`filter::compile_bytecode`]), selected by the kernel: the others cost it a few
    /// comparisons each instead of a message with tcp_info that we would parse and throw away.
    pub fn dump_filtered(&mut self, filter: &PortFilter) -> io::Result<Vec<TcpSocket>> {
        let mut sockets = Vec::new();
        self.dump_filtered_into(filter, &mut sockets)?;
        Ok(sockets)
    }

    /// [`Self::dump_filtered`] into `sockets` (cleared first), so that a poller can keep one
    /// vector: a fresh one per poll cost more in page faults than the parsing.
    pub fn dump_filtered_into(
        &mut self,
        filter: &PortFilter,
        sockets: &mut Vec<TcpSocket>,
    ) -> io::Result<()> {
        sockets.clear();
        self.dump_into(Some(&filter::compile_bytecode(filter)), sockets)
    }

    /// A dump with a raw filter program (tests hand the kernel broken ones).
    pub(super) fn dump_with(&mut self, bytecode: Option<&[u8]>) -> io::Result<Vec<TcpSocket>> {
        let mut sockets = Vec::new();
        self.dump_into(bytecode, &mut sockets)?;
        Ok(sockets)
    }

    fn dump_into(
        &mut self,
        bytecode: Option<&[u8]>,
        sockets: &mut Vec<TcpSocket>,
    ) -> io::Result<()> {
        if self.one_walk {
            self.seq = self.seq.wrapping_add(1);
            let request = wire::encode_dump_request_both_families(self.seq, bytecode);
            match self.run(&[request], sockets) {
                // EINVAL is also a refused program: keep one walk unless two requests work.
                Err(error) if refused(&error) => {
                    sockets.clear();
                    self.dump_per_family(bytecode, sockets)?;
                    self.one_walk = false;
                    return Ok(());
                }
                result => return result,
            }
        }
        self.dump_per_family(bytecode, sockets)
    }

    /// One request per address family: what a kernel without `TCPDIAG_GETSOCK` needs.
    fn dump_per_family(
        &mut self,
        bytecode: Option<&[u8]>,
        sockets: &mut Vec<TcpSocket>,
    ) -> io::Result<()> {
        let requests: Vec<Vec<u8>> = [libc::AF_INET as u8, libc::AF_INET6 as u8]
            .into_iter()
            .map(|family| {
                self.seq = self.seq.wrapping_add(1);
                match bytecode {
                    Some(bytecode) => {
                        wire::encode_filtered_dump_request(family, self.seq, bytecode)
                    }
                    None => wire::encode_dump_request(family, self.seq).to_vec(),
                }
            })
            .collect();
        self.run(&requests, sockets)
    }

    /// Sends the requests one after another and appends every socket of their replies.
    fn run(&mut self, requests: &[Vec<u8>], sockets: &mut Vec<TcpSocket>) -> io::Result<()> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => open_socket()?,
        };
        for request in requests {
            // The sequence number is in the request, bytes 8..12.
            let seq = u32::from_ne_bytes([request[8], request[9], request[10], request[11]]);
            dump_one(&socket, &mut self.buf, request, seq, sockets)?;
        }
        self.socket = Some(socket);
        Ok(())
    }

    /// Whether the last dumps asked for both families in one request.
    #[cfg(test)]
    pub(crate) fn one_walk(&self) -> bool {
        self.one_walk
    }

    /// Forgets that one request served both families, as on a kernel that refuses it (tests,
    /// and the benchmark's "before").
    #[cfg(test)]
    pub(crate) fn dump_per_family_only(&mut self) {
        self.one_walk = false;
    }
}

/// Errors with which a kernel refuses a request it does not serve.
fn refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::ENOENT | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT)
    )
}

fn open_socket() -> io::Result<NetlinkSocket> {
    let socket = NetlinkSocket::open()?;
    socket.set_receive_timeout(RECEIVE_TIMEOUT)?;
    Ok(socket)
}

/// Sends one dump request and reads its replies until NLMSG_DONE.
fn dump_one(
    socket: &NetlinkSocket,
    buf: &mut [u8],
    request: &[u8],
    seq: u32,
    sockets: &mut Vec<TcpSocket>,
) -> io::Result<()> {
    socket.send(request)?;
    loop {
        let len = socket
            .recv(buf, false)
            .map_err(|error| match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("sock_diag dump got no reply within {RECEIVE_TIMEOUT:?}"),
                ),
                _ => error,
            })?;
        let parsed = wire::parse_messages(&buf[..len], Some(seq));
        if let Some(errno) = parsed.error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if parsed.malformed > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "sock_diag dump: {} malformed netlink messages",
                    parsed.malformed
                ),
            ));
        }
        sockets.extend(parsed.sockets);
        if parsed.done {
            return Ok(());
        }
    }
}
