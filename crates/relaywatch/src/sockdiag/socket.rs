//! One TCP socket as sock_diag reports it, and the rules that turn its counters into payload bytes.
//!
//! Measured on Linux 6.18 over loopback (`tests::measure_artefacts`): the client sends 1000 bytes,
//! the server 500. bytes_retrans was 0 throughout. Destroy events have state Close, uid 0, inode 0.
//!
//! | case                                  | side   | acked | sent | received | rqueue |
//! |---------------------------------------|--------|-------|------|----------|--------|
//! | open, ESTABLISHED                     | client | 1001  | 1000 | 500      | 0      |
//! |                                       | server | 500   | 500  | 1000     | 0      |
//! | client shutdown(WR): FIN-WAIT-2       | client | 1002  | 1000 | 500      | 0      |
//! | and CLOSE-WAIT                        | server | 500   | 500  | 1001     | 1      |
//! | destroy: orderly, both read EOF       | client | 1002  | 1000 | 501      | 0      |
//! |                                       | server | 501   | 500  | 1001     | 0      |
//! | destroy: both close() at once         | client | 1002  | 1000 | 501      | 1      |
//! |                                       | server | 501   | 500  | 1001     | 1      |
//! | destroy: client close(), server 0.5 s later | client | 1002 | 1000 | **500** | 0 |
//! |                                       | server | 501   | 500  | 1001     | 1      |
//! | destroy: server close(), client 0.5 s later | client | 1002 | 1000 | 501  | 1      |
//! |                                       | server | 501   | 500  | **1000** | 0      |
//! | destroy: server closes with 10 more bytes unread (RST) | client | 1011 | 1010 | **500** | 0 |
//! |                                       | server | 500   | 500  | **1010** | 10     |
//!
//! So acked = payload + SYN (opener only) + our FIN once acked; sent = payload, no SYN or FIN;
//! received = payload + the peer's FIN once it arrived. The bold rows lack the peer's FIN: the socket
//! was freed first (a closed socket whose FIN gets a bare ACK becomes a FIN-WAIT-2 mini socket at
//! once, and the late FIN goes to that) or the connection was reset. Nothing in an event tells
//! them apart from the rows with the FIN: rqueue is 0 or 1 in both groups (1 = FIN arrived but
//! was never read), and no field counts the FIN on its own.

use std::net::SocketAddr;

/// TCP states as numbered in include/net/tcp_states.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    Unknown(u8),
}

impl TcpState {
    pub fn from_raw(raw: u8) -> TcpState {
        match raw {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            other => TcpState::Unknown(other),
        }
    }

    pub const fn raw(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
            TcpState::BoundInactive => 13,
            TcpState::Unknown(other) => other,
        }
    }
}

/// A TCP socket from a dump or a destroy event.
///
/// The counters are `None` when the kernel's `tcp_info` is too short to hold them (older kernels)
/// or missing. Destroy events carry no uid and no inode (the kernel leaves them 0), and their state
/// is always `Close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// IPv4-mapped IPv6 addresses are reported as IPv4.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub uid: u32,
    pub inode: u32,
    /// The kernel's socket cookie: stable for the socket's life, the same in dumps and its destroy event.
    pub cookie: u64,
    /// Received bytes not yet read by the application (`idiag_rqueue`).
    pub receive_queue: u32,
    /// Written bytes not yet acknowledged (`idiag_wqueue`).
    pub send_queue: u32,
    /// Length of the `tcp_info` the kernel sent, if it sent one.
    pub tcp_info_len: Option<usize>,
    /// `tcpi_bytes_acked`: sequence space acknowledged by the peer, so it includes our SYN and FIN.
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: sequence space received in order, so it includes the peer's FIN.
    pub bytes_received: Option<u64>,
    /// `tcpi_bytes_sent`: payload transmitted, retransmissions included.
    pub bytes_sent: Option<u64>,
    /// `tcpi_bytes_retrans`: payload retransmitted.
    pub bytes_retrans: Option<u64>,
}

impl TcpSocket {
    /// Whether `bytes_received` counts the peer's FIN, as far as the state tells.
    ///
    /// `None` for `Close`, the state of every destroy event: the kernel's counters are identical
    /// whether or not the FIN arrived before the socket was freed (see [`Self::payload_received`]).
    pub fn peer_fin_received(&self) -> Option<bool> {
        match self.state {
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait => {
                Some(true)
            }
            TcpState::Established
            | TcpState::SynSent
            | TcpState::SynRecv
            | TcpState::FinWait1
            | TcpState::FinWait2
            | TcpState::Listen
            | TcpState::NewSynRecv
            | TcpState::BoundInactive => Some(false),
            TcpState::Close | TcpState::Unknown(_) => None,
        }
    }

    /// Application payload received: `bytes_received` without the peer's FIN.
    ///
    /// Exact while the socket is open: the state says whether the FIN arrived. A closed socket
    /// (`Close`, every destroy event) does not say, so this assumes it arrived: always true for the
    /// side that closed second, and for the side that closed first when the peer's FIN came with
    /// its ACK. Otherwise (freed before the peer's FIN, or reset) it is 1 byte low; see the table
    /// at the top of this file.
    pub fn payload_received(&self) -> Option<u64> {
        let fin = self.peer_fin_received().unwrap_or(true);
        Some(self.bytes_received?.saturating_sub(u64::from(fin)))
    }

    /// Application payload sent and acknowledged.
    ///
    /// `bytes_acked` counts the SYN (for the side that opened) and our FIN once acknowledged, and
    /// the kernel does not say who opened. `bytes_sent - bytes_retrans` is the payload transmitted
    /// at least once, without SYN or FIN. The smaller of the two is exact whenever nothing is in
    /// flight (all transmitted payload acknowledged), open or closed, client or server. While data
    /// is in flight it lies between the acknowledged and the transmitted payload, at most 1 byte
    /// (the SYN) above the acknowledged payload.
    ///
    /// Kernels before 4.19 have no `bytes_sent`: then it is `bytes_acked` minus our FIN when the
    /// state shows it acknowledged, up to 2 bytes high (the SYN, and the FIN of a closed socket).
    pub fn payload_sent(&self) -> Option<u64> {
        let acked = self.bytes_acked?;
        match (self.bytes_sent, self.bytes_retrans) {
            (Some(sent), Some(retrans)) => Some(acked.min(sent.saturating_sub(retrans))),
            _ => {
                let fin_acked = matches!(self.state, TcpState::FinWait2 | TcpState::TimeWait);
                Some(acked.saturating_sub(u64::from(fin_acked)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, acked: u64, received: u64, sent: Option<u64>) -> TcpSocket {
        TcpSocket {
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            state,
            uid: 0,
            inode: 0,
            cookie: 0,
            receive_queue: 0,
            send_queue: 0,
            tcp_info_len: Some(232),
            bytes_acked: Some(acked),
            bytes_received: Some(received),
            bytes_sent: sent,
            bytes_retrans: sent.map(|_| 0),
        }
    }

    #[test]
    fn states_round_trip() {
        for raw in 0..=255u8 {
            assert_eq!(TcpState::from_raw(raw).raw(), raw);
        }
    }

    #[test]
    fn payload_rules() {
        use TcpState::*;
        // (state, bytes_acked, bytes_received, bytes_sent) -> (payload sent, payload received)
        let table = [
            // Client (opened: SYN in bytes_acked) and server, open.
            ((Established, 1001, 500, Some(1000)), (1000, 500)),
            ((Established, 500, 1000, Some(500)), (500, 1000)),
            // Client data in flight: between acked (900) and transmitted (1000), SYN at most.
            ((Established, 901, 500, Some(1000)), (901, 500)),
            // Half closes.
            ((FinWait2, 1002, 500, Some(1000)), (1000, 500)),
            ((CloseWait, 1001, 501, Some(1000)), (1000, 500)),
            // Destroy events: both FINs in.
            ((Close, 1002, 501, Some(1000)), (1000, 500)),
            ((Close, 501, 1001, Some(500)), (500, 1000)),
            // Old kernel without bytes_sent: up to 2 high.
            ((Established, 1001, 500, None), (1001, 500)),
            ((FinWait2, 1002, 500, None), (1001, 500)),
            // A connect that never completed.
            ((SynSent, 0, 0, Some(0)), (0, 0)),
            ((Close, 0, 0, Some(0)), (0, 0)),
        ];
        for ((state, acked, received, sent), (want_sent, want_received)) in table {
            let s = socket(state, acked, received, sent);
            assert_eq!(
                (s.payload_sent(), s.payload_received()),
                (Some(want_sent), Some(want_received)),
                "{state:?} acked {acked} received {received} sent {sent:?}"
            );
        }
    }

    #[test]
    fn missing_counters_give_none() {
        let mut s = socket(TcpState::Established, 1, 1, Some(1));
        s.bytes_acked = None;
        s.bytes_received = None;
        assert_eq!((s.payload_sent(), s.payload_received()), (None, None));
    }
}
