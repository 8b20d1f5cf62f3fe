//! The parser and the request encoder against hand-made buffers.

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
fn filtered_request_carries_the_program_as_an_attribute() {
    let program = [1u8, 4, 8, 0];
    let req = encode_filtered_dump_request(AF_INET, 9, &program);
    assert_eq!(req.len(), 72 + 4 + 4);
    assert_eq!(read_u32(&req, 0), 80, "nlmsg_len covers the attribute");
    assert_eq!(&req[..72][4..], &encode_dump_request(AF_INET, 9)[4..]);
    assert_eq!((read_u16(&req, 72), read_u16(&req, 74)), (8, 1));
    assert_eq!(&req[76..], &program);
}

#[test]
fn both_families_request_matches_the_uapi_layout() {
    let req = encode_dump_request_both_families(5, None);
    assert_eq!(req.len(), 16 + 60);
    assert_eq!(read_u32(&req, 0), 76);
    assert_eq!((read_u16(&req, 4), read_u16(&req, 6)), (18, 0x301));
    assert_eq!(read_u32(&req, 8), 5);
    // Family AF_UNSPEC, src/dst lengths 0, tcp_info asked for; states after the 48-byte sockid.
    assert_eq!(&req[16..20], &[0, 0, 0, 2]);
    assert_eq!(read_u32(&req, 16 + 52), 0b1011_1011_0110);
    assert_eq!(read_u32(&req, 16 + 56), 0);
    let program = [1u8, 4, 8, 0];
    let filtered = encode_dump_request_both_families(5, Some(&program));
    assert_eq!(read_u32(&filtered, 0), 84);
    assert_eq!(&filtered[4..76], &req[4..76]);
    assert_eq!((read_u16(&filtered, 76), read_u16(&filtered, 78)), (8, 1));
    assert_eq!(&filtered[80..], &program);
}

/// Replies to the both-families request carry its type, TCPDIAG_GETSOCK; one too short for a
/// socket is malformed like any other socket reply, not skipped (the fuzz harness once
/// generated type 18 as an "other" type and found the parser disagreeing).
#[test]
fn replies_of_the_both_families_request_are_sockets_too() {
    let mut buf = socket_message(3, true, FULL, [1, 2, 3, 4]);
    buf[4..6].copy_from_slice(&18u16.to_ne_bytes());
    let parsed = parse_messages(&buf, Some(3));
    assert_eq!(
        (parsed.sockets.len(), parsed.skipped, parsed.malformed),
        (1, 0, 0)
    );
    let short = header(NLMSG_HDRLEN, 18, 3);
    let parsed = parse_messages(&short, Some(3));
    assert_eq!(
        (parsed.sockets.len(), parsed.skipped, parsed.malformed),
        (0, 0, 1)
    );
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
