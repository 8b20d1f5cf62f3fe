//! Model-based property test: `Traffic` against a reference count of the bytes of every socket
//! admin_peers listed at least once. The world is a few 4-tuples (so tuples are reused with
//! new socket cookies), sockets that open, move bytes and close; admin_peers lists some of them
//! (a socket that closed since the last poll may still be listed, as the relay lags the
//! kernel); the dump, when this poll takes one (`--sockets-interval`), is a consistent
//! snapshot of the open sockets (the poller holds the lock across it); destroy events arrive
//! in order, late by up to a few polls (issue 9), never later than `DESTROYED_KEEP`.
//!
//! Checked after every step: the totals never decrease, and never exceed the true bytes of
//! listed sockets. At the end, once every socket closed and every event arrived: the totals
//! are exactly the bytes of the listed sockets.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

const TUPLES: u8 = 3;
/// Polls a destroy event may wait in the queue before it is applied (at 1 s a poll, far below
/// `DESTROYED_KEEP`).
const MAX_EVENT_DELAY: u64 = 3;

#[derive(Debug, Clone)]
enum Step {
    Open(u8),
    Transfer(u8, u16, u16),
    Close(u8),
    /// The destroy thread applies the oldest queued event.
    Deliver,
    /// admin_peers: which tuples it lists (bit per tuple).
    List(u8),
    /// The poll applies the last listing, with a dump when one is due.
    Poll,
    /// Time passes (every queued event arrives first).
    Sleep(u8),
    /// The open socket of a tuple leaves the dump for good, and closes within a few polls (see
    /// `Traffic::closing`: a socket can leave the dump before its destroy event is sent).
    Hide(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..TUPLES).prop_map(Step::Open),
        3 => (0..TUPLES, 0..1000u16, 0..1000u16).prop_map(|(t, r, s)| Step::Transfer(t, r, s)),
        2 => (0..TUPLES).prop_map(Step::Close),
        3 => Just(Step::Deliver),
        3 => any::<u8>().prop_map(Step::List),
        4 => Just(Step::Poll),
        1 => (0..40u8).prop_map(Step::Sleep),
        1 => (0..TUPLES).prop_map(Step::Hide),
    ]
}

#[derive(Debug)]
struct Socket {
    tuple: u8,
    cookie: u64,
    received: u64,
    sent: u64,
    /// The poll count when it closed.
    closed: Option<u64>,
    /// `World::clock` when it closed, was last listed, and when its destroy event arrived.
    closed_clock: u64,
    listed_clock: u64,
    delivered_clock: u64,
    listed: bool,
    /// Out of the dump since this poll count (closed at most `MAX_EVENT_DELAY` polls later).
    hidden: Option<u64>,
}

fn key_of(tuple: u8) -> ConnKey {
    (
        "127.0.0.1:30303".parse().unwrap(),
        SocketAddr::new("127.0.1.1".parse().unwrap(), 40000 + u16::from(tuple)),
    )
}

fn route_of(tuple: u8) -> Route {
    if tuple % 2 == 0 {
        Route::Tor
    } else {
        Route::Clearnet
    }
}

fn sample_of(socket: &Socket) -> SocketSample {
    let (local, remote) = key_of(socket.tuple);
    SocketSample {
        local,
        remote,
        cookie: socket.cookie,
        received: socket.received,
        sent: socket.sent,
    }
}

#[derive(Default)]
struct World {
    sockets: Vec<Socket>,
    /// Destroy events not yet applied: (socket index, poll count when queued).
    events: VecDeque<(usize, u64)>,
    /// The listing of the last admin_peers call: socket indexes.
    listing: Option<Vec<usize>>,
    polls: u64,
    /// Seconds since the start: one a poll, and sleeps.
    clock: u64,
    /// When polls, and dumps, were applied.
    polled: Vec<u64>,
    dumps: Vec<u64>,
}

impl World {
    fn open_on(&self, tuple: u8) -> Option<usize> {
        self.sockets
            .iter()
            .rposition(|s| s.tuple == tuple && s.closed.is_none())
    }

    /// Whether a new socket may take `tuple`. Only a settled one: its last socket closed before
    /// this poll's admin_peers call and its destroy event arrived. Otherwise no one can tell
    /// which socket a listing or an event belongs to (a connection never seen in a dump takes
    /// any socket of its tuple, by design).
    fn reusable(&self, tuple: u8) -> bool {
        let Some(last) = self.sockets.iter().rposition(|s| s.tuple == tuple) else {
            return true;
        };
        let Some(closed) = self.sockets[last].closed else {
            return false;
        };
        // Known imprecisions (a connection never seen in a dump takes any socket of its tuple):
        // a listing right after the close makes a connection that takes any socket of its
        // tuple until a dump shows it gone and DESTROYED_KEEP passed; an event of a socket not
        // listed waits DESTROYED_KEEP for a listing of its tuple, and a new socket's takes it.
        let settled = self
            .dumps
            .iter()
            .filter(|&&at| at > self.sockets[last].listed_clock)
            .any(|&at| self.polled.iter().any(|&poll| poll >= at + 30))
            && self
                .polled
                .iter()
                .any(|&at| at >= self.sockets[last].delivered_clock + 30);
        closed < self.polls
            && settled
            && self.events.iter().all(|(index, _)| *index != last)
            && self
                .listing
                .as_ref()
                .is_none_or(|listing| !listing.contains(&last))
    }

    /// The socket admin_peers names for a tuple: the open one, or one closed since the last poll.
    fn listable(&self, tuple: u8) -> Option<usize> {
        let last = self.sockets.iter().rposition(|s| s.tuple == tuple)?;
        match self.sockets[last].closed {
            None => Some(last),
            // Not once its event waited DESTROYED_KEEP (by design; only an outage of the
            // polls, a Sleep here, lets the relay list it that late).
            Some(at)
                if at == self.polls
                    && (self.events.iter().any(|(index, _)| *index == last)
                        || self.sockets[last].delivered_clock + 30 > self.clock) =>
            {
                Some(last)
            }
            Some(_) => None,
        }
    }

    /// The true bytes of listed sockets, as totals.
    fn expected(&self) -> Totals {
        let mut totals = Totals::default();
        for socket in self.sockets.iter().filter(|s| s.listed) {
            match route_of(socket.tuple) {
                Route::Tor => {
                    totals.tor_received += socket.received;
                    totals.tor_sent += socket.sent;
                }
                Route::Clearnet => {
                    totals.clearnet_received += socket.received;
                    totals.clearnet_sent += socket.sent;
                }
            }
        }
        totals
    }

    fn deliver(&mut self, traffic: &mut Traffic, now: Instant) {
        if let Some((index, _)) = self.events.pop_front() {
            self.sockets[index].delivered_clock = self.clock;
            traffic.observe_destroyed(sample_of(&self.sockets[index]), now);
        }
    }

    fn run(&mut self, step: &Step, traffic: &mut Traffic, start: Instant, dump_every: u64) {
        let now = start + Duration::from_secs(self.clock);
        match *step {
            Step::Open(tuple) => {
                if self.reusable(tuple) {
                    let cookie = self.sockets.len() as u64 + 1;
                    self.sockets.push(Socket {
                        tuple,
                        cookie,
                        received: 0,
                        sent: 0,
                        closed: None,
                        closed_clock: 0,
                        listed_clock: 0,
                        delivered_clock: 0,
                        listed: false,
                        hidden: None,
                    });
                }
            }
            Step::Transfer(tuple, received, sent) => {
                if let Some(index) = self.open_on(tuple) {
                    self.sockets[index].received += u64::from(received);
                    self.sockets[index].sent += u64::from(sent);
                }
            }
            Step::Close(tuple) => {
                if let Some(index) = self.open_on(tuple) {
                    self.sockets[index].closed = Some(self.polls);
                    self.sockets[index].closed_clock = self.clock;
                    self.events.push_back((index, self.polls));
                }
            }
            Step::Deliver => self.deliver(traffic, now),
            Step::Hide(tuple) => {
                if let Some(index) = self.open_on(tuple) {
                    let hidden = &mut self.sockets[index].hidden;
                    *hidden = hidden.or(Some(self.polls));
                }
            }
            Step::Sleep(seconds) => {
                for tuple in 0..TUPLES {
                    if self
                        .open_on(tuple)
                        .is_some_and(|i| self.sockets[i].hidden.is_some())
                    {
                        self.run(&Step::Close(tuple), traffic, start, dump_every);
                    }
                }
                while !self.events.is_empty() {
                    self.deliver(traffic, now);
                }
                // A listing is applied within the poll that asked for it.
                self.listing = None;
                self.clock += u64::from(seconds);
            }
            Step::List(mask) => {
                let listing = (0..TUPLES)
                    .filter(|tuple| mask & (1 << tuple) != 0)
                    .filter_map(|tuple| self.listable(tuple))
                    .collect();
                self.listing = Some(listing);
            }
            Step::Poll => {
                // A socket out of the dump closes soon (its owner saw the peer's FIN).
                for index in 0..self.sockets.len() {
                    let socket = &self.sockets[index];
                    if socket.closed.is_none()
                        && socket
                            .hidden
                            .is_some_and(|since| since + MAX_EVENT_DELAY <= self.polls)
                    {
                        self.run(&Step::Close(socket.tuple), traffic, start, dump_every);
                    }
                }
                // Events are late by a few polls at most.
                while self
                    .events
                    .front()
                    .is_some_and(|(_, queued)| queued + MAX_EVENT_DELAY <= self.polls)
                {
                    self.deliver(traffic, now);
                }
                let listing = self.listing.take().unwrap_or_default();
                let peers: Vec<(ConnKey, Route)> = listing
                    .iter()
                    .map(|&index| {
                        self.sockets[index].listed = true;
                        self.sockets[index].listed_clock = self.clock;
                        let tuple = self.sockets[index].tuple;
                        (key_of(tuple), route_of(tuple))
                    })
                    .collect();
                let dump: Option<ConnMap<SocketSample>> =
                    (self.polls % dump_every == 0).then(|| {
                        self.sockets
                            .iter()
                            .filter(|s| s.closed.is_none() && s.hidden.is_none())
                            .map(|s| (key_of(s.tuple), sample_of(s)))
                            .collect()
                    });
                self.polled.push(self.clock);
                if dump.is_some() {
                    self.dumps.push(self.clock);
                }
                traffic.observe_poll(&peers, dump.as_ref(), now);
                self.polls += 1;
                self.clock += 1;
            }
        }
    }

    /// Every socket closes, every event arrives, and the poller goes on until a dump settled all.
    fn finish(&mut self, traffic: &mut Traffic, start: Instant, dump_every: u64) {
        for tuple in 0..TUPLES {
            self.run(&Step::Close(tuple), traffic, start, dump_every);
        }
        while !self.events.is_empty() {
            self.run(&Step::Deliver, traffic, start, dump_every);
        }
        for _ in 0..=dump_every {
            self.run(&Step::Poll, traffic, start, dump_every);
        }
    }
}

fn at_most(counted: Totals, truth: Totals) -> bool {
    counted.tor_received <= truth.tor_received
        && counted.tor_sent <= truth.tor_sent
        && counted.clearnet_received <= truth.clearnet_received
        && counted.clearnet_sent <= truth.clearnet_sent
}

fn check(steps: &[Step], dump_every: u64) -> Result<(), TestCaseError> {
    let mut world = World::default();
    let mut traffic = Traffic::default();
    let start = Instant::now();
    let mut last = Totals::default();
    for step in steps {
        world.run(step, &mut traffic, start, dump_every);
        let totals = traffic.totals();
        prop_assert!(at_most(last, totals), "decreased: {last:?} -> {totals:?}");
        prop_assert!(
            at_most(totals, world.expected()),
            "more than the listed sockets hold after {step:?}: {totals:?} > {:?}",
            world.expected()
        );
        last = totals;
    }
    world.finish(&mut traffic, start, dump_every);
    prop_assert_eq!(traffic.totals(), world.expected(), "{:#?}", world.sockets);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    /// A dump every poll, every 5th (the default `--sockets-interval`), and every 40th (an
    /// interval longer than `DESTROYED_KEEP`).
    #[test]
    fn totals_are_the_bytes_of_listed_sockets(
        steps in prop::collection::vec(step(), 0..80),
        dump_every in prop_oneof![Just(1u64), Just(2), Just(5), Just(40)],
    ) {
        check(&steps, dump_every)?;
    }
}
