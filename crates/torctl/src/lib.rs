//! Pure half of relaywatch's Tor control-port source: bytes in, values out, no IO.
//!
//! Written here because no maintained crate fits: `stem-rs` 1.2 always pulls tokio (full),
//! tokio-rustls and chrono and turns unknown statuses/purposes/reasons into errors; `torut`
//! 0.2 is tokio-bound and leaves events as raw lines; `tor-interface` 0.6 does its own
//! socket IO and parses only HS_DESC. The spec requires tolerating unknown values (§1.1).
//!
//! The pieces, in the order bytes flow through them:
//!
//! - [`LineBuffer`] frames byte chunks into [`Message`]s (replies and `650` events), with a
//!   line-length limit; oversized and malformed lines are counted in [`FramingStats`].
//! - [`parse_event`] types an event ([`Event`]); unknown kinds are `Other`, broken known
//!   kinds `Malformed`, unknown words inside are kept ([`vocab`]).
//! - [`DialTracker`] turns events into the exporter's counters ([`TorCounters`]) and health
//!   gauges ([`TorHealth`]); failed dials get a bounded [`DialError`] reason.
//! - [`getinfo`] reads GETINFO replies; [`auth`] reads PROTOCOLINFO/AUTHCHALLENGE and
//!   computes the SAFECOOKIE hashes and AUTHENTICATE lines.
//!
//! ```
//! use std::time::Instant;
//! use torctl::{parse_event, DialError, DialTracker, LineBuffer};
//!
//! let mut buffer = LineBuffer::new();
//! let mut tracker = DialTracker::new();
//! buffer.push(b"650 STREAM 7 NEW 0 abc.onion:30303 SOURCE_ADDR=127.0.0.1:5 PURPOSE=USER\r\n");
//! buffer.push(b"650 STREAM 7 FAILED 0 abc.onion:30303 REASON=TORPROTOCOL\r\n");
//! while let Some(message) = buffer.next_message() {
//!     if let Some(event) = parse_event(&message) {
//!         tracker.observe(&event, Instant::now());
//!     }
//! }
//! assert_eq!(tracker.counters().dials_total, 1);
//! assert_eq!(tracker.counters().dial_error(DialError::BadOnionAddress), 1);
//! ```

pub mod args;
pub mod auth;
pub mod event;
pub mod framing;
pub mod getinfo;
pub mod tracker;
pub mod vocab;

pub use event::{parse_event, Event};
pub use framing::{FramingStats, LineBuffer, Message, ReplyLine};
pub use tracker::{DialError, DialTracker, TorCounters, TorHealth, TrackerLimits};
