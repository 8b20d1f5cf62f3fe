//! Property tests (a stable-Rust fuzzer) for the sock_diag parser, and in `filters` for the two filter compilers.
//! `PROPTEST_CASES=1000000 cargo test -p relaywatch --lib sockdiag::fuzz` runs long locally;
//! the default count keeps CI to a few seconds.
//!
//! Three kinds of input: arbitrary bytes; well-formed messages generated from a spec, which must
//! come back exactly (sockets, counts of skipped messages, errors); and such buffers mutated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;

use super::socket::{TcpSocket, TcpState};
use super::wire::{parse_messages, Parsed};

mod filters;

const NLMSG_HDRLEN: usize = 16;
const OURS: u32 = 7;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// One socket as the kernel would describe it, with everything the parser must give back.
#[derive(Debug, Clone)]
struct SocketSpec {
    v6: bool,
    local_ip: [u8; 16],
    remote_ip: [u8; 16],
    local_port: u16,
    remote_port: u16,
    interface: u32,
    state: u8,
    cookie: u64,
    queues: (u32, u32),
    uid: u32,
    inode: u32,
    /// `None`: no INET_DIAG_INFO attribute at all.
    info_len: Option<usize>,
    counters: [u64; 4],
    /// Other attributes (type, payload) before and after the tcp_info.
    before: Vec<(u16, Vec<u8>)>,
    after: Vec<(u16, Vec<u8>)>,
    /// A reply to the both-families request (type TCPDIAG_GETSOCK) rather than SOCK_DIAG_BY_FAMILY.
    both_families: bool,
}

#[derive(Debug, Clone)]
enum Message {
    Socket(SocketSpec),
    Done(i32),
    Error(i32),
    /// NOOP, OVERRUN, or a type we never asked for.
    Other(u16, Vec<u8>),
}

fn header(len: usize, msg_type: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out
}

fn attribute(out: &mut Vec<u8>, attr_type: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&attr_type.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Encodes from the uapi layout (linux/inet_diag.h), independently of the parser.
fn encode(message: &Message, seq: u32) -> Vec<u8> {
    let (msg_type, body) = match message {
        Message::Socket(s) => {
            let mut body = vec![0u8; 72];
            body[0] = if s.v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
            body[1] = s.state;
            body[4..6].copy_from_slice(&s.local_port.to_be_bytes());
            body[6..8].copy_from_slice(&s.remote_port.to_be_bytes());
            body[8..24].copy_from_slice(&s.local_ip);
            body[24..40].copy_from_slice(&s.remote_ip);
            body[40..44].copy_from_slice(&s.interface.to_ne_bytes());
            body[44..48].copy_from_slice(&(s.cookie as u32).to_ne_bytes());
            body[48..52].copy_from_slice(&((s.cookie >> 32) as u32).to_ne_bytes());
            body[56..60].copy_from_slice(&s.queues.0.to_ne_bytes());
            body[60..64].copy_from_slice(&s.queues.1.to_ne_bytes());
            body[64..68].copy_from_slice(&s.uid.to_ne_bytes());
            body[68..72].copy_from_slice(&s.inode.to_ne_bytes());
            for (attr_type, payload) in &s.before {
                attribute(&mut body, *attr_type, payload);
            }
            if let Some(len) = s.info_len {
                let mut info = vec![0u8; len];
                for (offset, value) in [120, 128, 200, 208].into_iter().zip(s.counters) {
                    if let Some(slot) = info.get_mut(offset..offset + 8) {
                        slot.copy_from_slice(&value.to_ne_bytes());
                    }
                }
                attribute(&mut body, 2, &info);
            }
            for (attr_type, payload) in &s.after {
                attribute(&mut body, *attr_type, payload);
            }
            (if s.both_families { 18 } else { 20 }, body)
        }
        Message::Done(status) => (3, status.to_ne_bytes().to_vec()),
        Message::Error(errno) => {
            let mut body = (-errno).to_ne_bytes().to_vec();
            body.extend(header(NLMSG_HDRLEN + 56, 20, seq));
            (2, body)
        }
        Message::Other(msg_type, payload) => (*msg_type, payload.clone()),
    };
    let mut out = header(NLMSG_HDRLEN + body.len(), msg_type, seq);
    out.extend(body);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// The address the parser must report (IPv4-mapped becomes IPv4; link-local keeps the interface).
fn address(v6: bool, raw: [u8; 16], port: u16, interface: u32) -> SocketAddr {
    if !v6 {
        return SocketAddr::new(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into(), port);
    }
    let ip = Ipv6Addr::from(raw);
    match ip.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        None if ip.segments()[0] & 0xffc0 == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, interface))
        }
        None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
    }
}

fn expected_socket(s: &SocketSpec) -> TcpSocket {
    let counter = |index: usize, offset: usize| {
        s.info_len
            .filter(|len| *len >= offset + 8)
            .map(|_| s.counters[index])
    };
    TcpSocket {
        local: address(s.v6, s.local_ip, s.local_port, s.interface),
        remote: address(s.v6, s.remote_ip, s.remote_port, s.interface),
        state: TcpState::from_raw(s.state),
        uid: s.uid,
        inode: s.inode,
        cookie: s.cookie,
        receive_queue: s.queues.0,
        send_queue: s.queues.1,
        tcp_info_len: s.info_len,
        bytes_acked: counter(0, 120),
        bytes_received: counter(1, 128),
        bytes_sent: counter(2, 200),
        bytes_retrans: counter(3, 208),
    }
}

/// What `parse_messages(buf, Some(OURS))` must return for these messages.
fn expected(messages: &[(Message, bool)]) -> Parsed {
    let mut want = Parsed::default();
    for (message, ours) in messages {
        if !ours {
            want.skipped += 1;
            continue;
        }
        match message {
            Message::Socket(s) => want.sockets.push(expected_socket(s)),
            Message::Done(status) => {
                want.done = true;
                if *status < 0 {
                    want.error = Some(status.saturating_neg());
                }
            }
            Message::Error(errno) if *errno != 0 => want.error = Some(*errno),
            Message::Error(_) => {}
            Message::Other(..) => want.skipped += 1,
        }
    }
    want
}

fn ip(v6: bool) -> impl Strategy<Value = [u8; 16]> {
    let v4 = any::<[u8; 4]>().prop_map(|octets| {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&octets);
        raw
    });
    let mapped = any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_ipv6_mapped().octets());
    let link_local = any::<u64>().prop_map(|low| {
        let mut raw = [0u8; 16];
        raw[0..2].copy_from_slice(&[0xfe, 0x80]);
        raw[8..].copy_from_slice(&low.to_be_bytes());
        raw
    });
    if v6 {
        prop_oneof![any::<[u8; 16]>(), mapped, link_local].boxed()
    } else {
        v4.boxed()
    }
}

/// Attribute types other than INET_DIAG_INFO (whatever the flag bits).
fn other_attributes() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    // Mapped rather than filtered: a long run must not hit proptest's cap on rejections.
    let attr_type = any::<u16>().prop_map(|t| if t & 0x3fff == 2 { t ^ 1 } else { t });
    prop::collection::vec((attr_type, prop::collection::vec(any::<u8>(), 0..24)), 0..3)
}

fn socket_spec() -> impl Strategy<Value = SocketSpec> {
    let info_len = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            0usize, 104, 127, 128, 135, 136, 200, 208, 215, 216, 232, 248, 300
        ])
        .prop_map(Some),
    ];
    any::<bool>()
        .prop_flat_map(move |v6| {
            (
                (
                    Just(v6),
                    ip(v6),
                    ip(v6),
                    any::<u16>(),
                    any::<u16>(),
                    any::<u32>(),
                ),
                (
                    any::<u8>(),
                    any::<u64>(),
                    any::<(u32, u32)>(),
                    any::<u32>(),
                    any::<u32>(),
                ),
                (
                    info_len.clone(),
                    any::<[u64; 4]>(),
                    other_attributes(),
                    other_attributes(),
                    any::<bool>(),
                ),
            )
        })
        .prop_map(|(address, fields, attributes)| SocketSpec {
            v6: address.0,
            local_ip: address.1,
            remote_ip: address.2,
            local_port: address.3,
            remote_port: address.4,
            interface: address.5,
            state: fields.0,
            cookie: fields.1,
            queues: fields.2,
            uid: fields.3,
            inode: fields.4,
            info_len: attributes.0,
            counters: attributes.1,
            before: attributes.2,
            after: attributes.3,
            both_families: attributes.4,
        })
}

fn message() -> impl Strategy<Value = Message> {
    // A long run found 18 here: it is no "other" type since dumps ask with TCPDIAG_GETSOCK.
    let other_type = any::<u16>().prop_map(|t| {
        if [2, 3, 18, 20].contains(&t) {
            t + 100
        } else {
            t
        }
    });
    prop_oneof![
        6 => socket_spec().prop_map(Message::Socket),
        1 => (-4096i32..=4096).prop_map(Message::Done),
        1 => (0i32..=4096).prop_map(Message::Error),
        1 => (other_type, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(t, payload)| Message::Other(t, payload)),
    ]
}

/// Messages, each ours or left over from another request (another sequence number).
fn messages() -> impl Strategy<Value = Vec<(Message, bool)>> {
    some_messages(0)
}

/// At least `min` messages: generated, not filtered, since proptest gives up after 1,024
/// rejected cases in a whole run (a long run ended that way).
fn some_messages(min: usize) -> impl Strategy<Value = Vec<(Message, bool)>> {
    prop::collection::vec((message(), prop::bool::weighted(0.8)), min..12)
}

fn buffer(messages: &[(Message, bool)]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|(message, ours)| encode(message, if *ours { OURS } else { OURS + 1 }))
        .collect()
}

/// What holds for any input: no panic (so no read out of bounds), bounded counts, and the
/// counters of every socket readable.
fn check_any(buf: &[u8], seq: Option<u32>) -> Parsed {
    let parsed = parse_messages(buf, seq);
    let messages = buf.len() / NLMSG_HDRLEN;
    assert!(
        parsed.sockets.len() + parsed.skipped <= messages,
        "{parsed:?}"
    );
    assert!(parsed.malformed <= messages + 1, "{parsed:?}");
    for socket in &parsed.sockets {
        let _ = (
            socket.payload_sent(),
            socket.payload_received(),
            socket.peer_fin_received(),
        );
    }
    parsed
}

#[derive(Debug, Clone)]
enum Mutation {
    Byte(prop::sample::Index, u8),
    /// A small value written as a u16 (length fields of headers and attributes).
    SmallLength(prop::sample::Index, u16),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        (any::<prop::sample::Index>(), 0u16..40).prop_map(|(i, v)| Mutation::SmallLength(i, v)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
    ]
}

fn mutate(mut buf: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if buf.is_empty() {
            break;
        }
        match mutation {
            Mutation::Byte(at, byte) => {
                let at = at.index(buf.len());
                buf[at] = *byte;
            }
            Mutation::SmallLength(at, value) => {
                let at = at.index(buf.len());
                if at + 2 <= buf.len() {
                    buf[at..at + 2].copy_from_slice(&value.to_ne_bytes());
                }
            }
            Mutation::Truncate(at) => buf.truncate(at.index(buf.len())),
            Mutation::Insert(at, bytes) => {
                let at = at.index(buf.len());
                buf.splice(at..at, bytes.iter().copied());
            }
        }
    }
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..2048), seq in any::<Option<u32>>()) {
        check_any(&buf, seq);
    }

    /// Well-formed messages come back exactly: sockets in order, every skipped message counted.
    #[test]
    fn well_formed_messages_round_trip(messages in messages()) {
        let buf = buffer(&messages);
        let parsed = check_any(&buf, Some(OURS));
        prop_assert_eq!(parsed, expected(&messages));
        // Without a sequence number to match, every socket is ours.
        let all = parse_messages(&buf, None);
        let sockets = messages.iter().filter(|(m, _)| matches!(m, Message::Socket(_))).count();
        prop_assert_eq!((all.sockets.len(), all.malformed), (sockets, 0));
    }

    /// Cut anywhere: the messages before the cut are decoded as before, the cut one is counted.
    #[test]
    fn a_cut_buffer_keeps_what_precedes_the_cut(messages in some_messages(1), cut in any::<prop::sample::Index>()) {
        let buf = buffer(&messages);
        // Every message is at least a header, so the buffer is never empty.
        let cut = cut.index(buf.len());
        let whole = parse_messages(&buf, Some(OURS));
        let part = check_any(&buf[..cut], Some(OURS));
        prop_assert!(whole.sockets.starts_with(&part.sockets));
        prop_assert!(part.malformed <= 1);
    }

    #[test]
    fn mutated_messages_never_panic(
        messages in messages(),
        mutations in prop::collection::vec(mutation(), 1..6),
        seq in any::<Option<u32>>(),
    ) {
        check_any(&mutate(buffer(&messages), &mutations), seq);
    }
}
