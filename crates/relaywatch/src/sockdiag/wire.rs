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
            SOCK_DIAG_BY_FAMILY => match parse_socket(payload) {
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
pub(super) mod build {
    //! Builders of hand-made netlink buffers, shared by the parser tests.

    use super::*;

    pub fn header(len: usize, msg_type: u16, seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&msg_type.to_ne_bytes());
        out.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out
    }

    /// One `SOCK_DIAG_BY_FAMILY` message with a `tcp_info` of `info_len` bytes carrying the counters.
    pub fn socket_message(seq: u32, v6: bool, info_len: usize, counters: [u64; 4]) -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = if v6 { AF_INET6 } else { AF_INET };
        msg[1] = TcpState::Established.raw();
        msg[4..6].copy_from_slice(&40000u16.to_be_bytes());
        msg[6..8].copy_from_slice(&30303u16.to_be_bytes());
        if v6 {
            msg[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
            msg[24..40].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        } else {
            msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
            msg[24..28].copy_from_slice(&[10, 1, 2, 3]);
        }
        msg[44..48].copy_from_slice(&0x0102_0304u32.to_ne_bytes());
        msg[48..52].copy_from_slice(&0x0a0b_0c0du32.to_ne_bytes());
        msg[56..60].copy_from_slice(&3u32.to_ne_bytes());
        msg[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        msg[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        // A padding attribute first, as nla_reserve_64bit may add one.
        msg.extend_from_slice(&4u16.to_ne_bytes());
        msg.extend_from_slice(&9u16.to_ne_bytes());
        let mut info = vec![0u8; info_len];
        for (offset, value) in [
            TCPI_BYTES_ACKED,
            TCPI_BYTES_RECEIVED,
            TCPI_BYTES_SENT,
            TCPI_BYTES_RETRANS,
        ]
        .into_iter()
        .zip(counters)
        {
            if let Some(slot) = info.get_mut(offset..offset + 8) {
                slot.copy_from_slice(&value.to_ne_bytes());
            }
        }
        msg.extend_from_slice(&((RTA_HDRLEN + info_len) as u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        msg.extend_from_slice(&info);
        msg.resize(align4(msg.len()), 0);
        let mut out = header(NLMSG_HDRLEN + msg.len(), SOCK_DIAG_BY_FAMILY, seq);
        out.extend_from_slice(&msg);
        out
    }

    pub fn done(seq: u32, status: i32) -> Vec<u8> {
        let mut out = header(NLMSG_HDRLEN + 4, NLMSG_DONE, seq);
        out.extend_from_slice(&status.to_ne_bytes());
        out
    }

    pub fn error(seq: u32, errno: i32) -> Vec<u8> {
        let mut out = header(NLMSG_HDRLEN + 4 + NLMSG_HDRLEN, NLMSG_ERROR, seq);
        out.extend_from_slice(&(-errno).to_ne_bytes());
        out.extend_from_slice(&header(
            NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN,
            SOCK_DIAG_BY_FAMILY,
            seq,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const FULL: usize = 232;

    #[test]
    fn request_matches_the_uapi_layout() {
        let req = encode_dump_request(AF_INET6, 7);
        assert_eq!(read_u32(&req, 0), 72);
        assert_eq!(read_u16(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(read_u16(&req, 6), 0x301);
        assert_eq!(read_u32(&req, 8), 7);
        assert_eq!(&req[16..20], &[AF_INET6, 6, 2, 0]);
        // ESTABLISHED..CLOSING minus SYN_RECV(3), TIME_WAIT(6), LISTEN(10).
        assert_eq!(read_u32(&req, 20), 0b1011_1011_0110);
        assert!(req[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn decodes_ipv4_and_ipv6_sockets_then_done() {
        let mut buf = socket_message(5, false, FULL, [1001, 501, 1000, 0]);
        buf.extend(socket_message(5, true, FULL, [1, 2, 3, 4]));
        buf.extend(done(5, 0));
        let parsed = parse_messages(&buf, Some(5));
        assert!(parsed.done);
        assert_eq!(
            (parsed.error, parsed.malformed, parsed.skipped),
            (None, 0, 0)
        );
        let [v4, v6] = &parsed.sockets[..] else {
            panic!("{parsed:?}")
        };
        assert_eq!(v4.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(v4.remote, "10.1.2.3:30303".parse().unwrap());
        assert_eq!(
            (v4.state, v4.uid, v4.inode),
            (TcpState::Established, 1000, 4242)
        );
        assert_eq!(v4.cookie, 0x0a0b_0c0d_0102_0304);
        assert_eq!(v4.receive_queue, 3);
        assert_eq!(v4.tcp_info_len, Some(FULL));
        assert_eq!(
            (
                v4.bytes_acked,
                v4.bytes_received,
                v4.bytes_sent,
                v4.bytes_retrans
            ),
            (Some(1001), Some(501), Some(1000), Some(0))
        );
        assert_eq!(v6.local, "[::1]:40000".parse().unwrap());
        assert_eq!(v6.remote, "[2001:db8::7]:30303".parse().unwrap());
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mut buf = socket_message(1, true, FULL, [0; 4]);
        let mapped = "::ffff:192.0.2.9".parse::<Ipv6Addr>().unwrap().octets();
        buf[NLMSG_HDRLEN + 24..NLMSG_HDRLEN + 40].copy_from_slice(&mapped);
        let parsed = parse_messages(&buf, None);
        assert_eq!(parsed.sockets[0].remote, "192.0.2.9:30303".parse().unwrap());
    }

    #[test]
    fn a_short_tcp_info_leaves_the_missing_fields_empty() {
        // Linux 4.1..4.18 sent tcp_info without bytes_sent; before 4.1 without any byte counter.
        for (len, expect) in [
            (FULL, [Some(1), Some(2), Some(3), Some(4)]),
            (208, [Some(1), Some(2), Some(3), None]),
            (200, [Some(1), Some(2), None, None]),
            (135, [Some(1), None, None, None]),
            (104, [None; 4]),
            (0, [None; 4]),
        ] {
            let parsed = parse_messages(&socket_message(1, false, len, [1, 2, 3, 4]), None);
            let s = &parsed.sockets[0];
            assert_eq!(parsed.malformed, 0, "len {len}");
            assert_eq!(
                [
                    s.bytes_acked,
                    s.bytes_received,
                    s.bytes_sent,
                    s.bytes_retrans
                ],
                expect,
                "len {len}"
            );
        }
    }

    #[test]
    fn error_and_negative_done_report_the_errno() {
        let parsed = parse_messages(&error(9, libc::EINVAL), Some(9));
        assert_eq!((parsed.error, parsed.done), (Some(libc::EINVAL), false));
        let parsed = parse_messages(&done(9, -libc::EINTR), Some(9));
        assert_eq!((parsed.error, parsed.done), (Some(libc::EINTR), true));
        // An acknowledgement (errno 0) is not an error.
        assert_eq!(parse_messages(&error(9, 0), Some(9)).error, None);
    }

    #[test]
    fn messages_of_other_requests_are_skipped() {
        let mut buf = socket_message(4, false, FULL, [0; 4]);
        buf.extend(done(4, 0));
        buf.extend(socket_message(5, false, FULL, [0; 4]));
        let parsed = parse_messages(&buf, Some(5));
        assert_eq!(
            (parsed.sockets.len(), parsed.done, parsed.skipped),
            (1, false, 2)
        );
    }

    #[test]
    fn truncated_and_inconsistent_buffers_are_counted_not_trusted() {
        let whole = socket_message(1, false, FULL, [7; 4]);
        // Cut anywhere: either nothing or a counted malformation, never a panic.
        for cut in 0..whole.len() {
            let parsed = parse_messages(&whole[..cut], None);
            assert!(parsed.sockets.is_empty(), "cut {cut}");
            assert_eq!(parsed.malformed, usize::from(cut > 0), "cut {cut}");
        }
        // A length field of zero or past the end.
        for bad_len in [0u32, 15, whole.len() as u32 + 4, u32::MAX] {
            let mut buf = whole.clone();
            buf[0..4].copy_from_slice(&bad_len.to_ne_bytes());
            let parsed = parse_messages(&buf, None);
            assert_eq!(
                (parsed.sockets.len(), parsed.malformed),
                (0, 1),
                "len {bad_len}"
            );
        }
        // An inet_diag_msg shorter than its struct.
        let mut short = header(NLMSG_HDRLEN + 40, SOCK_DIAG_BY_FAMILY, 1);
        short.extend_from_slice(&[0u8; 40]);
        assert_eq!(parse_messages(&short, None).malformed, 1);
        // An attribute whose length points past the message keeps the socket without counters.
        let mut bad_attr = whole.clone();
        let info_attr = NLMSG_HDRLEN + INET_DIAG_MSG_LEN + 4;
        bad_attr[info_attr..info_attr + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        let parsed = parse_messages(&bad_attr, None);
        assert_eq!((parsed.sockets.len(), parsed.malformed), (1, 1));
        assert_eq!(parsed.sockets[0].bytes_acked, None);
        // An unknown address family.
        let mut bad_family = whole;
        bad_family[NLMSG_HDRLEN] = 99;
        assert_eq!(parse_messages(&bad_family, None).malformed, 1);
    }

    /// A xorshift generator, so the fuzz loop needs no dependency and is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn random_and_mutated_buffers_never_panic() {
        let mut seed = socket_message(3, false, FULL, [1, 2, 3, 4]);
        seed.extend(socket_message(3, true, 160, [5; 4]));
        seed.extend(error(3, libc::ENOENT));
        seed.extend(done(3, 0));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let buf: Vec<u8> = if round % 4 == 0 {
                let len = rng.below(600);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut buf = seed.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(buf.len());
                    match rng.below(4) {
                        0 => buf[at] = rng.next() as u8,
                        1 => buf.truncate(at),
                        2 => buf[at..].fill(0),
                        _ => {
                            // Small lengths at header/attribute positions hit the loop guards.
                            let value = (rng.below(24) as u16).to_ne_bytes();
                            if at + 2 <= buf.len() {
                                buf[at..at + 2].copy_from_slice(&value);
                            }
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                }
                buf
            };
            let parsed = parse_messages(&buf, if round % 2 == 0 { Some(3) } else { None });
            // Each message takes at least a header, so nothing can report more than that.
            let bound = buf.len() / NLMSG_HDRLEN + 1;
            assert!(
                parsed.sockets.len() + parsed.skipped <= bound,
                "round {round}"
            );
            for socket in &parsed.sockets {
                let _ = (socket.payload_sent(), socket.payload_received());
            }
        }
    }
}
