//! The exporter's sources, one file each, and the health every source reports.

pub mod backoff;
pub mod relay;
pub mod sockets;
pub mod tor;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sources, as the `source` label spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Relay,
    Sockets,
    Tor,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Relay, Source::Sockets, Source::Tor];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Relay => "relay",
            Source::Sockets => "sockets",
            Source::Tor => "tor",
        }
    }
}

/// What `relaywatch_source_*` reports for one source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub up: bool,
    pub last_success_unix: Option<f64>,
    pub last_duration: Duration,
}

impl Health {
    pub fn record(&mut self, ok: bool, duration: Duration) {
        self.up = ok;
        self.last_duration = duration;
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success_unix = Some(now.as_secs_f64());
        }
    }
}
