//! labrelay: a test double reproducing gethrelay's observable surface (flags, admin API,
//! metrics text, Tor dialing, real sockets), so relaywatch can be tested without gethrelay.

pub mod cli;
pub mod dialer;
pub mod http;
pub mod identity;
pub mod log;
pub mod metrics;
pub mod node;
pub mod wire;
