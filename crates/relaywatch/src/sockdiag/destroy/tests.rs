//! The destroy-event filter with real sockets over loopback: what reaches userspace, and overruns.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::sockdiag::testing::raise_open_files_limit;
use crate::sockdiag::PortFilter;

const DEADLINE: Duration = Duration::from_secs(10);

type Tuple = (SocketAddr, SocketAddr);

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

struct Pair {
    client: TcpStream,
    server: TcpStream,
}

impl Pair {
    fn open(listener: &TcpListener) -> Pair {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        Pair { client, server }
    }

    fn client_tuple(&self) -> Tuple {
        let c = &self.client;
        (
            canonical(c.local_addr().unwrap()),
            canonical(c.peer_addr().unwrap()),
        )
    }

    fn server_tuple(&self) -> Tuple {
        let s = &self.server;
        (
            canonical(s.local_addr().unwrap()),
            canonical(s.peer_addr().unwrap()),
        )
    }

    /// Both ends see the other's FIN, nothing left unread: exact counters in the events.
    fn close_orderly(mut self) {
        self.client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(self.server.read(&mut [0; 8]).unwrap(), 0);
        self.server.shutdown(Shutdown::Write).unwrap();
        assert_eq!(self.client.read(&mut [0; 8]).unwrap(), 0);
    }
}

/// Receives until every tuple of `want` has an event (at most DEADLINE), then for `grace`
/// more; returns every event received, by tuple.
fn collect(
    listener: &mut DestroyListener,
    want: &[Tuple],
    grace: Duration,
) -> HashMap<Tuple, TcpSocket> {
    let mut got = HashMap::new();
    let start = Instant::now();
    while want.iter().any(|tuple| !got.contains_key(tuple)) {
        assert!(
            start.elapsed() < DEADLINE,
            "missing events: {:?}",
            want.iter()
                .filter(|t| !got.contains_key(*t))
                .collect::<Vec<_>>()
        );
        for socket in listener.recv(Duration::from_millis(50)).unwrap() {
            got.insert((socket.local, socket.remote), socket);
        }
    }
    let until = Instant::now() + grace;
    while Instant::now() < until {
        for socket in listener.recv(Duration::from_millis(20)).unwrap() {
            got.insert((socket.local, socket.remote), socket);
        }
    }
    got
}

#[test]
fn only_selected_sockets_reach_userspace_and_a_new_filter_applies_at_once() {
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("[::1]:0")
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let (relay_port, other_port) = (
        relay.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    // Set before the listener opens: it starts filtered.
    let filter = DestroyFilter::new();
    filter
        .set(&PortFilter {
            local: [relay_port].into(),
            remote: Default::default(),
        })
        .unwrap();
    let mut listener = DestroyListener::open_filtered(&filter).unwrap();

    let relay_pairs: Vec<Pair> = (0..20).map(|_| Pair::open(&relay)).collect();
    let other_pairs: Vec<Pair> = (0..20).map(|_| Pair::open(&other)).collect();
    let relay_servers: Vec<Tuple> = relay_pairs.iter().map(Pair::server_tuple).collect();
    let not_selected: Vec<Tuple> = relay_pairs
        .iter()
        .map(Pair::client_tuple)
        .chain(
            other_pairs
                .iter()
                .flat_map(|p| [p.client_tuple(), p.server_tuple()]),
        )
        .collect();
    close_and_check(
        &mut listener,
        relay_pairs,
        other_pairs,
        &relay_servers,
        &not_selected,
    );

    // The poller learns other ports: the relay's clients (remote port) and the other listener.
    filter
        .set(&PortFilter {
            local: [other_port].into(),
            remote: [relay_port].into(),
        })
        .unwrap();
    let relay_pairs: Vec<Pair> = (0..20).map(|_| Pair::open(&relay)).collect();
    let other_pairs: Vec<Pair> = (0..20).map(|_| Pair::open(&other)).collect();
    let want: Vec<Tuple> = relay_pairs
        .iter()
        .map(Pair::client_tuple)
        .chain(other_pairs.iter().map(Pair::server_tuple))
        .collect();
    let not_selected: Vec<Tuple> = relay_pairs
        .iter()
        .map(Pair::server_tuple)
        .chain(other_pairs.iter().map(Pair::client_tuple))
        .collect();
    close_and_check(
        &mut listener,
        relay_pairs,
        other_pairs,
        &want,
        &not_selected,
    );
    assert_eq!(listener.overruns(), 0);
}

/// 5,000 unrelated connections (10,000 sockets) close at once while 50 relay connections close
/// among them, and nobody reads until all are closed: the unfiltered listener overflows, the
/// filtered one gets every relay event with exact counters and no overrun.
/// Run alone to see the figures: cargo test -p relaywatch --lib storm -- --nocapture
#[test]
fn no_overruns_when_thousands_of_unrelated_connections_close_at_once() {
    const UNRELATED: usize = 5000;
    const RELAY: usize = 50;
    let limit = raise_open_files_limit();
    if limit < (2 * (UNRELATED + RELAY) + 200) as u64 {
        eprintln!("skipped: RLIMIT_NOFILE is {limit}, too low for {UNRELATED} connections");
        return;
    }
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let unrelated = TcpListener::bind("127.0.0.1:0").unwrap();
    let filter = DestroyFilter::new();
    filter
        .set(&PortFilter {
            local: [relay.local_addr().unwrap().port()].into(),
            remote: Default::default(),
        })
        .unwrap();
    let mut filtered = DestroyListener::open_filtered(&filter).unwrap();
    let mut unfiltered = DestroyListener::open().unwrap();

    let mut relay_pairs: Vec<(Pair, usize)> = Vec::new();
    for index in 0..RELAY {
        let mut pair = Pair::open(&relay);
        let bytes = 1000 + index * 17;
        pair.client.write_all(&vec![1; bytes]).unwrap();
        pair.server.read_exact(&mut vec![0; bytes]).unwrap();
        relay_pairs.push((pair, bytes));
    }
    let unrelated_pairs: Vec<Pair> = (0..UNRELATED).map(|_| Pair::open(&unrelated)).collect();
    let want: HashMap<Tuple, u64> = relay_pairs
        .iter()
        .map(|(pair, bytes)| (pair.server_tuple(), *bytes as u64))
        .collect();

    let started = Instant::now();
    let mut relay_pairs = relay_pairs.into_iter();
    for (index, pair) in unrelated_pairs.into_iter().enumerate() {
        drop(pair);
        if index % (UNRELATED / RELAY) == 0 {
            if let Some((pair, _)) = relay_pairs.next() {
                pair.close_orderly();
            }
        }
    }
    relay_pairs.for_each(|(pair, _)| pair.close_orderly());
    let closing = started.elapsed();
    // Let the kernel's broadcast work catch up before anyone reads.
    std::thread::sleep(Duration::from_millis(500));

    let relay_tuples: Vec<Tuple> = want.keys().copied().collect();
    let got = collect(&mut filtered, &relay_tuples, Duration::from_millis(200));
    for (tuple, bytes) in &want {
        assert_eq!(got[tuple].payload_received(), Some(*bytes), "{tuple:?}");
    }
    let mut unfiltered_events = 0;
    loop {
        let batch = unfiltered.recv(Duration::from_millis(200)).unwrap();
        if batch.is_empty() {
            break;
        }
        unfiltered_events += batch.len();
    }
    println!(
        "storm: {UNRELATED} unrelated + {RELAY} relay connections closed in {closing:?}; \
         unfiltered listener: {unfiltered_events} events, {} overruns; \
         filtered listener: {} events ({} relay), {} overruns",
        unfiltered.overruns(),
        got.len(),
        want.len(),
        filtered.overruns()
    );
    assert_eq!(filtered.overruns(), 0, "the filtered listener overflowed");
}

/// Closes both sets of connections, waits for the events of `want`, and checks that no event
/// of a socket in `not_selected` came through the filter.
fn close_and_check(
    listener: &mut DestroyListener,
    relay_pairs: Vec<Pair>,
    other_pairs: Vec<Pair>,
    want: &[Tuple],
    not_selected: &[Tuple],
) {
    relay_pairs.into_iter().for_each(Pair::close_orderly);
    other_pairs.into_iter().for_each(Pair::close_orderly);
    let got = collect(listener, want, Duration::from_millis(300));
    let leaked: Vec<_> = not_selected
        .iter()
        .filter(|t| got.contains_key(*t))
        .collect();
    assert!(
        leaked.is_empty(),
        "events of unselected sockets: {leaked:?}"
    );
}
