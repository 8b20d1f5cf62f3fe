//! Dumps the TCP sockets of our network namespace with their counters, all or by port; unprivileged.

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
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            socket: Some(open_socket()?),
            buf: vec![0; RECEIVE_BUFFER],
            seq: 0,
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
        self.dump_with(Some(&filter::compile_bytecode(filter)))
    }

    /// A dump with a raw filter program (tests hand the kernel broken ones).
    pub(super) fn dump_with(&mut self, bytecode: Option<&[u8]>) -> io::Result<Vec<TcpSocket>> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => open_socket()?,
        };
        let mut sockets = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            self.seq = self.seq.wrapping_add(1);
            let request = match bytecode {
                Some(bytecode) => wire::encode_filtered_dump_request(family, self.seq, bytecode),
                None => wire::encode_dump_request(family, self.seq).to_vec(),
            };
            dump_family(&socket, &mut self.buf, &request, self.seq, &mut sockets)?;
        }
        self.socket = Some(socket);
        Ok(sockets)
    }
}

fn open_socket() -> io::Result<NetlinkSocket> {
    let socket = NetlinkSocket::open()?;
    socket.set_receive_timeout(RECEIVE_TIMEOUT)?;
    Ok(socket)
}

fn dump_family(
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
