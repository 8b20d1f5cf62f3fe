//! When the poller dumps the socket counters (`--sockets-interval`), and whether the polls
//! between two dumps follow new peers in the traffic state.

use std::time::{Duration, Instant};

/// Polls between dumps follow new peers (so that their destroy events count) only while dumps
/// work: only a dump settles the connections they add, and with the dump failing for good (no
/// `tcp_diag` in the kernel, say) every peer ever listed would stay followed, growing memory and
/// the work of every poll (the kernel filters are built from the followed connections).
#[derive(Debug, Default)]
pub(super) struct DumpSchedule {
    last: Option<Instant>,
    working: bool,
}

impl DumpSchedule {
    /// Whether a poll at `now` dumps. Half a poll of slack, or a poll that comes a moment early
    /// would wait a whole interval.
    pub(super) fn due(&self, now: Instant, poll: Duration, sockets: Duration) -> bool {
        self.last
            .is_none_or(|at| now.saturating_duration_since(at) + poll / 2 >= sockets)
    }

    /// Whether a poll without a dump follows this poll's peers.
    pub(super) fn follows_between_dumps(&self) -> bool {
        self.working
    }

    /// A dump was attempted at `at`; `ok` whether it gave the sockets.
    pub(super) fn dumped(&mut self, at: Instant, ok: bool) {
        self.last = Some(at);
        self.working = ok;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);
    const SOCKETS: Duration = Duration::from_secs(5);

    #[test]
    fn dumps_at_the_first_poll_then_every_sockets_interval() {
        let start = Instant::now();
        let mut schedule = DumpSchedule::default();
        assert!(schedule.due(start, POLL, SOCKETS));
        schedule.dumped(start, true);
        let at = |ms| start + Duration::from_millis(ms);
        assert!(!schedule.due(at(1_000), POLL, SOCKETS));
        assert!(!schedule.due(at(4_000), POLL, SOCKETS));
        // A poll a moment early still dumps.
        assert!(schedule.due(at(4_990), POLL, SOCKETS));
        // A sockets interval shorter than a poll: every poll.
        assert!(schedule.due(at(1_000), POLL, Duration::from_millis(100)));
    }

    /// With sock_diag failing, polls between the failed dumps must not follow peers: nothing
    /// would ever settle them.
    #[test]
    fn polls_between_dumps_follow_peers_only_while_dumps_work() {
        let start = Instant::now();
        let mut schedule = DumpSchedule::default();
        assert!(!schedule.follows_between_dumps(), "no dump yet");
        schedule.dumped(start, true);
        assert!(schedule.follows_between_dumps());
        schedule.dumped(start + SOCKETS, false);
        assert!(!schedule.follows_between_dumps());
        schedule.dumped(start + SOCKETS * 2, true);
        assert!(schedule.follows_between_dumps());
    }
}
