//! Benchmarks of the lab binary: they print figures and never assert them, because timings
//! on a shared 2-core machine belong in a benchmark, not in a test. How to run them, what
//! each figure is compared against and the latest figures are in BENCHMARKS.md.
//!
//! - [`exporter_bench`]: `relaywatch exporter` beside a synthetic relay with N real peer
//!   connections (and M unrelated sockets), scrape latency beside a static floor server,
//!   CPU per poll, RSS.
//! - [`tor_events_bench`]: the exporter's CPU while its tor emits events (needs `tor`).

mod exporter;
mod floor;
pub mod http;
mod measure;
pub mod netns;
pub mod procfs;
mod relay;
mod report;
mod sockets;
mod tor_events;

pub use exporter::{exporter_bench, ExporterBench};
pub use floor::{serve_floor, FloorKind};
pub use procfs::rss_bytes;
pub use tor_events::tor_events_bench;
