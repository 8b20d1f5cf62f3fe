//! Why a Tor dial failed: the bounded reason set and the decision from a stream's own
//! REASON plus what tor said about the same onion shortly before (the "hints").
//!
//! The STREAM REASON alone cannot tell the onion-service failures apart (RESOLVEFAILED is
//! both 0xF0 and 0xF2, measured in sockdiag-and-tor-events.md §B), so the tracker keeps, per
//! onion address and for a short time only, what HS_DESC and HS circuit events said. The
//! decision order follows where tor itself sets the SOCKS extended error (hs_client.c):
//! the most recent onion-service failure wins, as the last extended code tor sets wins.

use crate::vocab::StreamReason;

/// A failed Tor dial's reason: a fixed set (label values of `p2p_dials_tor_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DialError {
    /// 0xF0: no HSDir had the descriptor.
    DescriptorNotFound,
    /// 0xF1: a descriptor came back but did not parse.
    DescriptorInvalid,
    /// 0xF2: no introduction point accepted the introduction.
    IntroFailed,
    /// 0xF3: the rendezvous circuit timed out.
    RendezvousFailed,
    /// 0xF4/0xF5: the descriptor needs client authorization that is missing or wrong. Tor
    /// emits the same events for both, so the control port cannot split them.
    ClientAuth,
    /// 0xF6: the onion address is malformed (checksum, key or encoding).
    BadOnionAddress,
    /// 0xF7: every introduction attempt timed out.
    IntroTimeout,
    /// 0x05 style: the service answered and refused (RELAY_END from the service side).
    Refused,
    /// 0x06: tor gave up waiting (SocksTimeout) for a circuit or descriptor.
    Timeout,
    /// 0x01 style: the circuit carrying the stream was destroyed.
    Destroyed,
    Other,
}

impl DialError {
    pub const ALL: [DialError; 11] = [
        DialError::DescriptorNotFound,
        DialError::DescriptorInvalid,
        DialError::IntroFailed,
        DialError::RendezvousFailed,
        DialError::ClientAuth,
        DialError::BadOnionAddress,
        DialError::IntroTimeout,
        DialError::Refused,
        DialError::Timeout,
        DialError::Destroyed,
        DialError::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DialError::DescriptorNotFound => "descriptor_not_found",
            DialError::DescriptorInvalid => "descriptor_invalid",
            DialError::IntroFailed => "intro_failed",
            DialError::RendezvousFailed => "rendezvous_failed",
            DialError::ClientAuth => "client_auth",
            DialError::BadOnionAddress => "bad_onion_address",
            DialError::IntroTimeout => "intro_timeout",
            DialError::Refused => "refused",
            DialError::Timeout => "timeout",
            DialError::Destroyed => "destroyed",
            DialError::Other => "other",
        }
    }

    /// Counted in `p2p_dials_tor_error_circuit`: a circuit or onion-service path failure, as
    /// opposed to the service refusing, a bad address, client authorization or unknown.
    pub fn is_circuit_error(self) -> bool {
        matches!(
            self,
            DialError::DescriptorNotFound
                | DialError::DescriptorInvalid
                | DialError::IntroFailed
                | DialError::IntroTimeout
                | DialError::RendezvousFailed
                | DialError::Timeout
                | DialError::Destroyed
        )
    }

    pub(crate) fn index(self) -> usize {
        DialError::ALL
            .iter()
            .position(|e| *e == self)
            .expect("ALL lists every variant")
    }
}

/// How the descriptor fetches for an onion failed since its last received descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DescFailures {
    /// An HSDir answered 404 (`REASON=NOT_FOUND`): tor then replies 0xF0.
    pub not_found: bool,
    /// A descriptor did not parse (`REASON=BAD_DESC`).
    pub bad_desc: bool,
    // Neither flag: the fetch failed otherwise (QUERY_REJECTED, UNEXPECTED,
    // QUERY_NO_HSDIR, …); the descriptor was not obtained all the same.
}

/// What tor recently said about one onion address. `*_seq` values order the hints; higher
/// is more recent.
#[derive(Debug, Clone, Default)]
pub(crate) struct OnionHints {
    /// Descriptor fetch failures since the last RECEIVED, and when the last one came.
    pub desc: Option<(DescFailures, u64)>,
    /// A descriptor arrived (HS_DESC RECEIVED).
    pub desc_received: Option<u64>,
    /// Failed introduction circuits: whether all of them timed out, and the last one.
    pub intro: Option<(bool, u64)>,
    /// A rendezvous circuit for this onion timed out.
    pub rend_timeout: Option<u64>,
}

/// Classifies a failed dial to an onion from its STREAM REASON and REMOTE_REASON and the
/// onion's hints (see the table in the crate README).
pub(crate) fn classify(
    reason: Option<&StreamReason>,
    remote_reason: Option<&StreamReason>,
    hints: Option<&OnionHints>,
) -> DialError {
    let empty = OnionHints::default();
    let hints = hints.unwrap_or(&empty);
    match reason {
        // 0xF6: tor refuses a malformed onion before anything else (connection_edge.c).
        Some(StreamReason::TorProtocol) => return DialError::BadOnionAddress,
        // The service side answered with RELAY_END (unmapped port → REMOTE_REASON=DONE,
        // backend down → CONNECTREFUSED, …): the peer refused, the path worked.
        Some(StreamReason::End) => return DialError::Refused,
        Some(StreamReason::ConnectRefused | StreamReason::Done | StreamReason::ExitPolicy)
            if remote_reason.is_none() =>
        {
            return DialError::Refused
        }
        _ => {}
    }
    // The most recent onion-service failure decides, as tor's last extended code does.
    let desc = hints.desc.map(|(_, seq)| seq).unwrap_or(0);
    let intro = hints.intro.map(|(_, seq)| seq).unwrap_or(0);
    let rend = hints.rend_timeout.unwrap_or(0);
    if rend > 0 && rend > desc && rend > intro {
        // 0xF3 is set on every stream of a rendezvous circuit that timed out, whatever the
        // stream's own end reason.
        return DialError::RendezvousFailed;
    }
    match reason {
        Some(StreamReason::ResolveFailed) => {
            if let Some((failures, _)) = hints.desc.filter(|(_, seq)| *seq >= intro) {
                // tor sets 0xF0 on a 404 and nothing on a bad descriptor, so NOT_FOUND wins.
                if failures.not_found {
                    DialError::DescriptorNotFound
                } else if failures.bad_desc {
                    DialError::DescriptorInvalid
                } else {
                    // No descriptor could be fetched at all: not found, from the dialer's
                    // point of view.
                    DialError::DescriptorNotFound
                }
            } else if let Some((all_timeouts, _)) = hints.intro {
                if all_timeouts {
                    DialError::IntroTimeout
                } else {
                    DialError::IntroFailed
                }
            } else {
                // A descriptor arrived, or none was fetched at all during the dial, so tor
                // used one it had cached (a fetch always shows as HS_DESC events, which we
                // subscribe to): either way the failure was at the introduction step (0xF2).
                // Measured: a service stopped after the dialer's tor cached its descriptor
                // fails in ~1 s with RESOLVEFAILED and no HS_DESC or intro-circuit failure.
                DialError::IntroFailed
            }
        }
        // Descriptor fetched, no introduction tried, stream closed with MISC: tor could not
        // decrypt the descriptor (hs_client.c client_desc_missing_bad_client_auth).
        Some(StreamReason::Misc) if hints.desc_received.is_some() && hints.intro.is_none() => {
            DialError::ClientAuth
        }
        Some(StreamReason::Timeout) => DialError::Timeout,
        Some(StreamReason::Destroy) => DialError::Destroyed,
        _ => DialError::Other,
    }
}
