//! The sock_diag wire format: encodes the dump request and decodes replies and destroy events; pure, no IO.
//!
//! Layouts are from the uapi headers linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h and
//! linux/tcp.h. Everything is decoded from bytes with bounds checks, so no input can panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::socket::{TcpSocket, TcpState};

/// `NETLINK_SOCK_DIAG` from linux/netlink.h.
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// `SOCK_DIAG_BY_FAMILY` from linux/sock_diag.h: the type of requests, replies and destroy events.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK` from linux/inet_diag.h: the older request, still served, whose dumps cover
/// both address families in one walk of the socket hash table; replies carry this type.
const TCPDIAG_GETSOCK: u16 = 18;
/// `sizeof(struct inet_diag_req)`, the older request's body.
const INET_DIAG_REQ_LEN: usize = 60;
/// `SKNLGRP_INET_TCP_DESTROY` and `SKNLGRP_INET6_TCP_DESTROY` from linux/sock_diag.h.
pub const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
pub const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const NLMSG_HDRLEN: usize = 16;

/// `INET_DIAG_INFO` from linux/inet_diag.h: the attribute carrying `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// Attribute type bits without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;
const RTA_HDRLEN: usize = 4;
/// `sizeof(struct inet_diag_req_v2)`.
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `sizeof(struct inet_diag_msg)`; already a multiple of 4, so attributes start right after it.
const INET_DIAG_MSG_LEN: usize = 72;

/// Byte offsets of u64 fields in `struct tcp_info` (linux/tcp.h, checked with offsetof against
/// linux-libc-dev 6.1). `bytes_acked`/`bytes_received` exist since Linux 4.1, `bytes_sent`/
/// `bytes_retrans` since 4.19; an older kernel sends a shorter struct and those fields are `None`.
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_BYTES_SENT: usize = 200;
const TCPI_BYTES_RETRANS: usize = 208;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Every TCP state except LISTEN, TIME_WAIT (a mini socket without tcp_info), SYN_RECV and
/// NEW_SYN_RECV (request sockets) and BOUND_INACTIVE (never connected), as the `idiag_states` bit
/// mask (bit n = state n).
const DUMPED_STATES: u32 = 1 << TcpState::Established.raw()
    | 1 << TcpState::SynSent.raw()
    | 1 << TcpState::FinWait1.raw()
    | 1 << TcpState::FinWait2.raw()
    | 1 << TcpState::Close.raw()
    | 1 << TcpState::CloseWait.raw()
    | 1 << TcpState::LastAck.raw()
    | 1 << TcpState::Closing.raw();

/// Rounds up to the 4-byte alignment of netlink messages and attributes (NLMSG_ALIGN, RTA_ALIGN).
fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// Encodes a netlink dump request for every TCP socket of `family` (`AF_INET` or `AF_INET6`) in the
/// dumped states, asking for `tcp_info`.
pub fn encode_dump_request(family: u8, seq: u32) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN] {
    let mut out = [0u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN];
    // struct nlmsghdr; nlmsg_pid 0 addresses the kernel.
    out[0..4].copy_from_slice(&((NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN) as u32).to_ne_bytes());
    out[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // struct inet_diag_req_v2; the sockid stays zero, which a dump ignores.
    let req = &mut out[NLMSG_HDRLEN..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[2] = 1 << (INET_DIAG_INFO - 1); // idiag_ext
    req[4..8].copy_from_slice(&DUMPED_STATES.to_ne_bytes());
    out
}

/// `INET_DIAG_REQ_BYTECODE` from linux/inet_diag.h: the request attribute holding a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;

/// The dump request of [`encode_dump_request`] with a filter program (see `super::filter`)
/// attached, so that the kernel sends only the sockets the program selects.
pub fn encode_filtered_dump_request(family: u8, seq: u32, bytecode: &[u8]) -> Vec<u8> {
    let mut out = encode_dump_request(family, seq).to_vec();
    append_bytecode(&mut out, bytecode);
    out
}

/// A dump request for the TCP sockets of both families at once (`TCPDIAG_GETSOCK` with
/// `struct inet_diag_req`, which the kernel serves with family AF_UNSPEC): the same states,
/// tcp_info and optional filter program as [`encode_dump_request`]. The kernel walks its whole
/// socket hash table once per request, empty buckets included (262,144 here: 2.3 ms), so one
/// request instead of two halves the cost of a dump.
pub fn encode_dump_request_both_families(seq: u32, bytecode: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![0u8; NLMSG_HDRLEN + INET_DIAG_REQ_LEN];
    out[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    out[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // struct inet_diag_req: family 0 (AF_UNSPEC), src_len, dst_len, ext, the sockid (48 bytes,
    // ignored by a dump), states, dbs.
    let req = &mut out[NLMSG_HDRLEN..];
    req[3] = 1 << (INET_DIAG_INFO - 1);
    req[52..56].copy_from_slice(&DUMPED_STATES.to_ne_bytes());
    match bytecode {
        Some(bytecode) => append_bytecode(&mut out, bytecode),
        None => {
            out[0..4].copy_from_slice(&((NLMSG_HDRLEN + INET_DIAG_REQ_LEN) as u32).to_ne_bytes())
        }
    }
    out
}

/// Appends an `INET_DIAG_REQ_BYTECODE` attribute and sets `nlmsg_len`.
fn append_bytecode(out: &mut Vec<u8>, bytecode: &[u8]) {
    let attribute_len = RTA_HDRLEN + bytecode.len();
    // The caller keeps programs within filter::MAX_BYTECODE; a longer one gets a length the
    // kernel refuses (EINVAL) rather than a truncated, different program.
    out.extend_from_slice(&u16::try_from(attribute_len).unwrap_or(0).to_ne_bytes());
    out.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    out.extend_from_slice(bytecode);
    out.resize(align4(out.len()), 0);
    let total = u32::try_from(out.len()).unwrap_or(u32::MAX);
    out[0..4].copy_from_slice(&total.to_ne_bytes());
}

/// What one datagram (or any byte buffer) of netlink messages held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Sockets from `SOCK_DIAG_BY_FAMILY` messages.
    pub sockets: Vec<TcpSocket>,
    /// An `NLMSG_DONE` ended the dump.
    pub done: bool,
    /// A positive errno from `NLMSG_ERROR` (or from a negative `NLMSG_DONE` status).
    pub error: Option<i32>,
    /// Messages or attribute lists that were cut short or inconsistent.
    pub malformed: usize,
    /// Well-formed messages that were not for us: other sequence numbers, NOOP, unknown types.
    pub skipped: usize,
}

/// Decodes netlink messages. With `seq`, messages carrying another sequence number (leftovers of an
/// earlier request) are skipped. Never panics and always terminates: each step consumes at least
/// one header.
pub fn parse_messages(buf: &[u8], seq: Option<u32>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            parsed.malformed += 1;
            break;
        }
        let len = read_u32(rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            parsed.malformed += 1;
            break;
        }
        let msg_type = read_u16(rest, 4);
        let msg_seq = read_u32(rest, 8);
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[align4(len).min(rest.len())..];

        if seq.is_some_and(|want| want != msg_seq) {
            parsed.skipped += 1;
            continue;
        }
        match msg_type {
            NLMSG_ERROR => match payload.get(0..4) {
                // struct nlmsgerr: a negative errno, or 0 for an acknowledgement.
                Some(_) => {
                    let errno = read_i32(payload, 0);
                    if errno != 0 {
                        parsed.error = Some(errno.saturating_neg());
                    }
                }
                None => parsed.malformed += 1,
            },
            NLMSG_DONE => {
                parsed.done = true;
                // The payload is the dump's final status; a negative one means the dump failed.
                if payload.len() >= 4 && read_i32(payload, 0) < 0 {
                    parsed.error = Some(read_i32(payload, 0).saturating_neg());
                }
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match parse_socket(payload) {
                Some((socket, attributes_ok)) => {
                    if !attributes_ok {
                        parsed.malformed += 1;
                    }
                    parsed.sockets.push(socket);
                }
                None => parsed.malformed += 1,
            },
            // NLMSG_NOOP, NLMSG_OVERRUN (never sent by Linux) and types we did not ask for.
            _ => parsed.skipped += 1,
        }
    }
    parsed
}

/// Decodes `struct inet_diag_msg` and its attributes. Returns `None` when the fixed part is
/// unusable, and `false` beside the socket when the attribute list was cut short.
fn parse_socket(payload: &[u8]) -> Option<(TcpSocket, bool)> {
    let msg = payload.get(..INET_DIAG_MSG_LEN)?;
    let family = msg[0];
    // struct inet_diag_sockid at offset 4: ports are big-endian, addresses network order.
    let local_port = u16::from_be_bytes([msg[4], msg[5]]);
    let remote_port = u16::from_be_bytes([msg[6], msg[7]]);
    let interface = read_u32(msg, 40);
    let local = socket_addr(family, &msg[8..24], local_port, interface)?;
    let remote = socket_addr(family, &msg[24..40], remote_port, interface)?;
    let cookie = u64::from(read_u32(msg, 44)) | u64::from(read_u32(msg, 48)) << 32;

    let (tcp_info, attributes_ok) = find_attribute(&payload[INET_DIAG_MSG_LEN..], INET_DIAG_INFO);
    let info = tcp_info.unwrap_or(&[]);
    let socket = TcpSocket {
        local,
        remote,
        state: TcpState::from_raw(msg[1]),
        uid: read_u32(msg, 64),
        inode: read_u32(msg, 68),
        cookie,
        receive_queue: read_u32(msg, 56),
        send_queue: read_u32(msg, 60),
        tcp_info_len: tcp_info.map(<[u8]>::len),
        bytes_acked: read_u64_at(info, TCPI_BYTES_ACKED),
        bytes_received: read_u64_at(info, TCPI_BYTES_RECEIVED),
        bytes_sent: read_u64_at(info, TCPI_BYTES_SENT),
        bytes_retrans: read_u64_at(info, TCPI_BYTES_RETRANS),
    };
    Some((socket, attributes_ok))
}

/// Finds the payload of the first attribute of `wanted` type; the flag is false if the list was
/// cut short (the attributes before the damage still count).
fn find_attribute(mut attributes: &[u8], wanted: u16) -> (Option<&[u8]>, bool) {
    let mut found = None;
    while !attributes.is_empty() {
        if attributes.len() < RTA_HDRLEN {
            return (found, false);
        }
        let len = usize::from(read_u16(attributes, 0));
        if len < RTA_HDRLEN || len > attributes.len() {
            return (found, false);
        }
        if found.is_none() && read_u16(attributes, 2) & NLA_TYPE_MASK == wanted {
            found = Some(&attributes[RTA_HDRLEN..len]);
        }
        attributes = &attributes[align4(len).min(attributes.len())..];
    }
    (found, true)
}

/// Builds a socket address; IPv4-mapped IPv6 addresses (an IPv6 socket talking IPv4) become IPv4,
/// so a connection looks the same whichever socket family carries it.
fn socket_addr(family: u8, raw: &[u8], port: u16, interface: u32) -> Option<SocketAddr> {
    let octets: [u8; 16] = raw.try_into().ok()?;
    match family {
        AF_INET => Some(SocketAddr::new(
            Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).into(),
            port,
        )),
        AF_INET6 => {
            let ip = Ipv6Addr::from(octets);
            match IpAddr::V6(ip).to_canonical() {
                IpAddr::V4(v4) => Some(SocketAddr::new(v4.into(), port)),
                // Only link-local addresses need the interface to be meaningful.
                IpAddr::V6(v6) => {
                    let scope = if v6.segments()[0] & 0xffc0 == 0xfe80 {
                        interface
                    } else {
                        0
                    };
                    Some(SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)))
                }
            }
        }
        _ => None,
    }
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    read_u32(buf, at) as i32
}

/// A native-endian u64 if the buffer is long enough to hold all of it.
fn read_u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
pub(super) mod build;

#[cfg(test)]
mod tests;
