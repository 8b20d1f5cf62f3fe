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
