//! labrelay's integration tests: one binary (see ARCHITECTURE.md, "Testing").

/// Command-line behaviour: usage errors, exit codes.
mod cli;
/// Three modes over a real private Tor network and over clearnet.
mod three_modes;
