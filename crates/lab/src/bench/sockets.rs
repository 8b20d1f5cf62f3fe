//! The synthetic relay's sockets: N real loopback TCP connections for its peers (both ends
//! in this process), M unrelated sockets beside them, a pump that keeps bytes flowing over
//! every peer connection, and optional churn of unrelated connections (destroy events).
//!
//! Both ends of a peer connection live in the bench's network namespace, so the exporter's
//! unfiltered dump sees two sockets per peer where a pod sees one; only the relay's end is
//! listed in admin_peers, so only that end is accounted.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// geth's p2p port; the relay listens on it, and outbound peers are dialed on it.
const P2P_PORT: u16 = 30303;
/// Bytes per peer per second: the relay sends this many, and receives twice as many, so a
/// swapped ingress/egress shows in the byte check.
pub const RELAY_SENDS_PER_SECOND: usize = 64;
pub const RELAY_RECEIVES_PER_SECOND: usize = 128;
/// The pump visits a tenth of the peers every 100 ms, spreading its syscalls over the second.
const PUMP_SLICES: usize = 10;

/// One peer connection as admin_peers describes it.
pub struct PeerConn {
    pub inbound: bool,
    /// The relay's end, as geth prints it in `network.localAddress` / `remoteAddress`.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The host:port in the peer's enode (its listening address, not the ephemeral port).
    pub enode_addr: SocketAddr,
    relay_side: TcpStream,
    peer_side: TcpStream,
}

/// Every socket the bench opened in the namespace.
pub struct Sockets {
    pub peers: Vec<PeerConn>,
    /// Listening sockets: the relay's p2p port, the outbound peers' ports, the unrelated one.
    pub listeners: Vec<TcpListener>,
    pub unrelated: Vec<TcpStream>,
    /// The unrelated service's listener, where the churn connects too.
    other: TcpListener,
}

/// Descriptors the bench needs for `peers` and `unrelated`, with room for HTTP and the rest.
pub fn descriptors_needed(peers: usize, unrelated: usize) -> u64 {
    (2 * peers + unrelated + 256 + 512) as u64
}

fn subnet_ip(subnet: [u8; 3], host: u8) -> Ipv4Addr {
    Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host)
}

/// Binds `ip:preferred`, or any port on `ip` if that one is taken.
fn bind(ip: Ipv4Addr, preferred: u16) -> Result<TcpListener> {
    TcpListener::bind((ip, preferred))
        .or_else(|_| TcpListener::bind((ip, 0)))
        .with_context(|| format!("cannot listen on {ip}"))
}

/// A connected pair on loopback: the connecting end (bound to `from`) and the accepted end.
fn pair(listener: &TcpListener, from: Ipv4Addr) -> Result<(TcpStream, TcpStream)> {
    let to = listener.local_addr().context("listener address")?;
    let socket = connect_from(from, to)?;
    let (accepted, _) = listener
        .accept()
        .with_context(|| format!("accepting on {to}"))?;
    Ok((socket, accepted))
}

/// connect() from a chosen source address (std has no bind-before-connect).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        anyhow::bail!("only IPv4 loopback is used here");
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the TcpStream takes ownership at
    // once so every early return closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket()");
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("bind {from}:0"));
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("connect {from} → {to}"));
        }
        Ok(stream)
    }
}

impl Sockets {
    /// Opens `peers` peer connections (every third outbound, as geth dials a third of its
    /// peers) and `unrelated` unrelated sockets (half as many connections, both ends here),
    /// all on `subnet`: the relay is `.1`, peers are spread over `.2`–`.254`.
    pub fn open(subnet: [u8; 3], peers: usize, unrelated: usize) -> Result<Sockets> {
        let relay_ip = subnet_ip(subnet, 1);
        let p2p = bind(relay_ip, P2P_PORT)?;
        let p2p_addr = p2p.local_addr().context("p2p listener address")?;
        let mut listeners = vec![p2p];
        // Outbound peers' listeners, one per peer address, made when first needed.
        let mut peer_listeners: Vec<Option<usize>> = vec![None; 256];
        let mut conns = Vec::with_capacity(peers);
        for index in 0..peers {
            let host = 2 + (index % 253) as u8;
            let peer_ip = subnet_ip(subnet, host);
            let conn = if index % 3 == 2 {
                let slot = match peer_listeners[host as usize] {
                    Some(slot) => slot,
                    None => {
                        listeners.push(bind(peer_ip, P2P_PORT)?);
                        peer_listeners[host as usize] = Some(listeners.len() - 1);
                        listeners.len() - 1
                    }
                };
                let (relay_side, peer_side) = pair(&listeners[slot], relay_ip)?;
                let remote = relay_side.peer_addr().context("peer address")?;
                PeerConn {
                    inbound: false,
                    local: relay_side.local_addr().context("local address")?,
                    remote,
                    enode_addr: remote,
                    relay_side,
                    peer_side,
                }
            } else {
                let (peer_side, relay_side) = pair(&listeners[0], peer_ip)?;
                PeerConn {
                    inbound: true,
                    local: p2p_addr,
                    remote: relay_side.peer_addr().context("peer address")?,
                    enode_addr: SocketAddr::from((peer_ip, P2P_PORT)),
                    relay_side,
                    peer_side,
                }
            };
            conn.relay_side
                .set_nonblocking(true)
                .context("O_NONBLOCK")?;
            conn.peer_side.set_nonblocking(true).context("O_NONBLOCK")?;
            conns.push(conn);
        }
        // Unrelated sockets: another service in the pod (tor, a sidecar) on another port.
        let other = bind(relay_ip, 0)?;
        let mut others = Vec::with_capacity(unrelated);
        while others.len() + 1 < unrelated {
            let (a, b) = pair(&other, relay_ip)?;
            others.push(a);
            others.push(b);
        }
        Ok(Sockets {
            peers: conns,
            listeners,
            unrelated: others,
            other,
        })
    }

    /// Sockets this bench opened (both ends of every connection, and listeners).
    pub fn count(&self) -> usize {
        2 * self.peers.len() + self.unrelated.len() + self.listeners.len() + 1
    }
}

/// Bytes the pump moved, as the relay's end saw them.
#[derive(Default)]
pub struct PumpCounters {
    pub relay_sent: AtomicU64,
    pub relay_received: AtomicU64,
    /// Writes or reads that failed other than by would-block (a broken connection).
    pub errors: AtomicU64,
    /// Unrelated connections opened and closed by the churn.
    pub churned: AtomicU64,
}

/// Background threads that keep the sockets busy; stopped when dropped.
pub struct Pump {
    pub counters: Arc<PumpCounters>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pump {
    /// Starts the byte pump, and a churn of `churn_per_second` unrelated connections if > 0.
    pub fn start(sockets: Arc<Sockets>, churn_per_second: usize) -> Result<Pump> {
        let counters = Arc::new(PumpCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (pumped, stopping) = (Arc::clone(&counters), Arc::clone(&stop));
        let socks = Arc::clone(&sockets);
        threads.push(
            std::thread::Builder::new()
                .name("bench-pump".into())
                .spawn(move || pump(&socks, &pumped, &stopping))
                .context("starting the pump thread")?,
        );
        if churn_per_second > 0 {
            let (churned, stopping) = (Arc::clone(&counters), Arc::clone(&stop));
            threads.push(
                std::thread::Builder::new()
                    .name("bench-churn".into())
                    .spawn(move || churn(&sockets, churn_per_second, &churned, &stopping))
                    .context("starting the churn thread")?,
            );
        }
        Ok(Pump {
            counters,
            stop,
            threads,
        })
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn pump(sockets: &Sockets, counters: &PumpCounters, stop: &AtomicBool) {
    let out = [0x5a_u8; RELAY_SENDS_PER_SECOND];
    let back = [0xa5_u8; RELAY_RECEIVES_PER_SECOND];
    let mut sink = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let slice = (tick % PUMP_SLICES as u64) as usize;
        for conn in sockets.peers.iter().skip(slice).step_by(PUMP_SLICES) {
            write_counted(&conn.relay_side, &out, &counters.relay_sent, counters);
            write_counted(&conn.peer_side, &back, &counters.relay_received, counters);
            drain(&conn.relay_side, &mut sink, counters);
            drain(&conn.peer_side, &mut sink, counters);
        }
        tick += 1;
        // Fixed cadence from the start, so a slow pass does not stretch the rate.
        let next = started + Duration::from_millis(100 * tick);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn write_counted(mut stream: &TcpStream, bytes: &[u8], sent: &AtomicU64, counters: &PumpCounters) {
    match stream.write(bytes) {
        Ok(written) => {
            sent.fetch_add(written as u64, Ordering::Relaxed);
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn drain(mut stream: &TcpStream, sink: &mut [u8], counters: &PumpCounters) {
    loop {
        match stream.read(sink) {
            Ok(0) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Opens and closes unrelated connections at `per_second`, each closed with RST (linger 0)
/// so no TIME_WAIT piles up; every close is a destroy event the exporter's listener receives.
fn churn(sockets: &Sockets, per_second: usize, counters: &PumpCounters, stop: &AtomicBool) {
    let listener = &sockets.other;
    let Ok(to) = listener.local_addr() else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let started = Instant::now();
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * per_second as f64) as u64;
        while done < due && !stop.load(Ordering::Relaxed) {
            match TcpStream::connect(to).and_then(|client| Ok((client, listener.accept()?.0))) {
                Ok((client, server)) => {
                    linger_zero(&client);
                    linger_zero(&server);
                    counters.churned.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a struct we own on a descriptor we own.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_peers_both_ways_and_pumps_bytes() {
        let subnet = crate::relays::random_subnet();
        let sockets = Arc::new(Sockets::open(subnet, 6, 10).unwrap());
        assert_eq!(sockets.peers.iter().filter(|peer| !peer.inbound).count(), 2);
        for peer in &sockets.peers {
            assert_eq!(peer.relay_side.local_addr().unwrap(), peer.local);
            assert_eq!(peer.relay_side.peer_addr().unwrap(), peer.remote);
        }
        assert_eq!(sockets.unrelated.len(), 10);
        let pump = Pump::start(Arc::clone(&sockets), 50).unwrap();
        let counters = Arc::clone(&pump.counters);
        // Bounded wait for one full pass over every peer (ten 100 ms slices), then stop.
        let deadline = Instant::now() + Duration::from_secs(30);
        while counters.relay_sent.load(Ordering::Relaxed) < 6 * RELAY_SENDS_PER_SECOND as u64
            || counters.churned.load(Ordering::Relaxed) == 0
        {
            assert!(Instant::now() < deadline, "the pump moved no bytes in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(pump);
        let sent = counters.relay_sent.load(Ordering::Relaxed);
        assert_eq!(counters.relay_received.load(Ordering::Relaxed), sent * 2);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 0);
    }
}
