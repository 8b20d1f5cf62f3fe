//! Poll CPU at 1,000 peers with 5,000 unrelated sockets in the namespace, before and after the
//! kernel-side filter, measured in one run (interleaved). Figures are printed, not asserted.
//!
//! Variants: before (every socket, one request per family, as the exporter did); after
//! (`RelayPorts` filter, one request for both families); the filter with one request per
//! family; a filter of each peer's own local port (why `RelayPorts` uses fixed ports); and the
//! floor, a filter selecting nothing: what walking the kernel's socket hash table costs alone.
//! Each poll is the socket work of the poller: filter, dump, keying, `Traffic::observe_poll`.
//!
//! Run: cargo test --release -p relaywatch --lib poll_cpu -- --ignored --nocapture

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::classify::Route;
use crate::sockdiag::testing::raise_open_files_limit;
use crate::traffic::Traffic;

const PEERS: usize = 1000;
const UNRELATED_SOCKETS: usize = 5000;
const POLLS: usize = 100;

/// CPU time of this thread (user + system), precise to the nanosecond.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// System (kernel) CPU time of this thread; coarser than `thread_cpu`, for the split only.
fn thread_system_cpu() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    Duration::new(
        usage.ru_stime.tv_sec as u64,
        usage.ru_stime.tv_usec as u32 * 1000,
    )
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

struct Variant {
    name: &'static str,
    traffic: Traffic,
    cpu: Vec<Duration>,
    system: Duration,
    sockets: usize,
}

impl Variant {
    fn new(name: &'static str) -> Variant {
        Variant {
            name,
            traffic: Traffic::default(),
            cpu: Vec::new(),
            system: Duration::ZERO,
            sockets: 0,
        }
    }

    /// One poll's socket work: (filter,) dump, keying, accounting.
    fn poll(
        &mut self,
        dump: impl FnOnce(&Traffic) -> ConnMap<SocketSample>,
        routes: &[(ConnKey, Route)],
    ) {
        let (started, system) = (thread_cpu(), thread_system_cpu());
        let sockets = dump(&self.traffic);
        self.traffic
            .observe_poll(routes, Some(&sockets), Instant::now());
        self.cpu.push(thread_cpu() - started);
        self.system += thread_system_cpu() - system;
        self.sockets = sockets.len();
    }

    fn report(&mut self) {
        self.cpu.sort();
        let mean = self.cpu.iter().sum::<Duration>() / self.cpu.len() as u32;
        println!(
            "{:<34} {:>6} sockets/dump   CPU per poll: median {:>9.3?}  mean {:>9.3?}  p90 {:>9.3?}  (kernel {:>9.3?})",
            self.name,
            self.sockets,
            self.cpu[self.cpu.len() / 2],
            mean,
            self.cpu[self.cpu.len() * 9 / 10],
            self.system / self.cpu.len() as u32,
        );
    }
}

#[test]
#[ignore = "benchmark, prints figures"]
fn poll_cpu_at_1000_peers_with_5000_unrelated_sockets() {
    let limit = raise_open_files_limit();
    let needed = (2 * PEERS + UNRELATED_SOCKETS + 100) as u64;
    assert!(limit >= needed, "RLIMIT_NOFILE {limit} < {needed}");
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let socks = TcpListener::bind("127.0.0.1:0").unwrap();
    let clearnet_peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let unrelated = TcpListener::bind("127.0.0.1:0").unwrap();

    // Half the peers inbound, a quarter dialed through the SOCKS port, a quarter on clearnet.
    let mut held = Vec::new();
    let mut peers: Vec<(ConnKey, Direction, Route)> = Vec::new();
    for index in 0..PEERS {
        let (listener, direction, route) = match index % 4 {
            0 | 1 => (&relay, Direction::Inbound, Route::Tor),
            2 => (&socks, Direction::Outbound, Route::Tor),
            _ => (&clearnet_peer, Direction::Outbound, Route::Clearnet),
        };
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7; 100]).unwrap();
        server.read_exact(&mut [0; 100]).unwrap();
        let ours = if direction == Direction::Inbound {
            &server
        } else {
            &client
        };
        let key = (
            canonical(ours.local_addr().unwrap()),
            canonical(ours.peer_addr().unwrap()),
        );
        peers.push((key, direction, route));
        held.push((client, server));
    }
    for _ in 0..UNRELATED_SOCKETS / 2 {
        let client = TcpStream::connect(unrelated.local_addr().unwrap()).unwrap();
        let (server, _) = unrelated.accept().unwrap();
        held.push((client, server));
    }
    // Let the ACKs settle, so both variants read the same counters.
    std::thread::sleep(Duration::from_millis(300));
    let routes: Vec<(ConnKey, Route)> = peers.iter().map(|(k, _, r)| (*k, *r)).collect();
    let directions = || peers.iter().map(|(k, d, _)| (*k, *d));

    // Before: what main did, every socket, one request per family. After: the filter, one walk.
    let mut per_family = SockDiag::open().unwrap();
    per_family.dump_per_family_only();
    let mut diag = SockDiag::open().unwrap();
    let ports = RelayPorts::new(socks.local_addr().unwrap());
    let mut before = Variant::new("before: unfiltered, per family");
    let mut after = Variant::new("after: RelayPorts filter, one walk");
    let mut filtered_per_family = Variant::new("RelayPorts filter, per family");
    let mut exact = Variant::new("each peer's local port, one walk");
    let mut floor = Variant::new("floor: selects nothing, one walk");
    let mut update_cpu = Vec::new();
    for _ in 0..POLLS {
        before.poll(|_| dump(&mut per_family).unwrap(), &routes);
        after.poll(
            |traffic| {
                let started = thread_cpu();
                let filter = ports.update(directions(), traffic.followed());
                update_cpu.push(thread_cpu() - started);
                dump_filtered(&mut diag, &filter).unwrap()
            },
            &routes,
        );
        filtered_per_family.poll(
            |traffic| {
                let filter = ports.update(directions(), traffic.followed());
                dump_filtered(&mut per_family, &filter).unwrap()
            },
            &routes,
        );
        exact.poll(
            |_| {
                let filter = PortFilter {
                    local: peers.iter().map(|(k, _, _)| k.0.port()).collect(),
                    remote: Default::default(),
                };
                dump_filtered(&mut diag, &filter).unwrap()
            },
            &routes,
        );
        floor.poll(
            |_| dump_filtered(&mut diag, &PortFilter::default()).unwrap(),
            &[],
        );
    }
    let in_namespace = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    println!(
        "{PEERS} peers ({} sockets of ours with their other ends) + {UNRELATED_SOCKETS} unrelated sockets, {POLLS} polls each, interleaved",
        2 * PEERS
    );
    println!(
        "{}",
        in_namespace
            .lines()
            .find(|l| l.starts_with("TCP"))
            .unwrap_or("")
    );
    update_cpu.sort();
    let filter = ports.update(directions(), after.traffic.followed());
    println!(
        "RelayPorts::update (filter + destroy-filter attach when changed): median {:?}; filter: local {:?} remote {:?}",
        update_cpu[update_cpu.len() / 2],
        filter.local,
        filter.remote
    );
    for variant in [
        &mut before,
        &mut after,
        &mut filtered_per_family,
        &mut exact,
        &mut floor,
    ] {
        variant.report();
    }
    assert_eq!(
        before.traffic.totals(),
        after.traffic.totals(),
        "the filter changed what is counted"
    );
    drop(held);
}
