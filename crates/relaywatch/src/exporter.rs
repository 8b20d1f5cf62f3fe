//! The exporter: polls the sources, keeps the state behind the metrics, renders /metrics.
//!
//! Two threads write the state: the poller (admin_peers, then a socket dump, then the leak
//! guard) and the destroy listener (final counters of closed sockets). A failing source
//! only sets its `up` to 0; counters keep their values and resume when it comes back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::catalog;
use crate::classify::{classify, enode_names_onion, Direction, Route, TorEndpoints};
use crate::cli::{ExporterArgs, Mode};
use crate::exposition::Exposition;
use crate::leak_guard::LeakGuard;
use crate::sockdiag::{DestroyListener, SockDiag};
use crate::sources::relay::{Peer, RelayClient};
use crate::sources::tor::{TorControlConfig, TorState};
use crate::sources::{sockets, tor, Health, Source};
use crate::traffic::{ConnKey, Traffic};

/// When this process started (seconds since the Unix epoch), fixed at the first call.
pub fn process_start_time() -> f64 {
    static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    })
}

/// Peers per route and direction, from the last successful admin_peers.
#[derive(Debug, Default, Clone, Copy)]
struct PeerCounts {
    tor: [u64; 2],
    clearnet: [u64; 2],
    onion_fallback: u64,
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

#[derive(Default)]
struct State {
    traffic: Traffic,
    peers: Option<PeerCounts>,
    guard: LeakGuard,
    health: HashMap<&'static str, Health>,
    polls: u64,
    /// ENOBUFS on the destroy-event socket, over every listener this process opened.
    destroy_overruns: u64,
}

/// The exporter's shared state and configuration.
pub struct Exporter {
    mode: Mode,
    enforce: bool,
    tor: TorEndpoints,
    interval: Duration,
    relay: RelayClient,
    state: Mutex<State>,
    ready: AtomicBool,
    tor_control: Option<TorControlConfig>,
    tor_state: Arc<Mutex<TorState>>,
}

impl Exporter {
    pub fn new(args: &ExporterArgs, tor_control: Option<TorControlConfig>) -> Arc<Exporter> {
        Arc::new(Exporter {
            tor_control,
            tor_state: Arc::new(Mutex::new(TorState::default())),
            mode: args.mode,
            enforce: args.enforce,
            tor: args.tor_endpoints(),
            interval: args.poll_interval,
            relay: RelayClient::new(&args.relay_admin_url),
            state: Mutex::new(State::default()),
            ready: AtomicBool::new(false),
        })
    }

    /// True once a first poll has run (successful or not).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock must not take the metrics down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, source: Source, ok: bool, duration: Duration) {
        let mut state = self.state();
        let was_up = state.health.get(source.as_str()).map(|health| health.up);
        state
            .health
            .entry(source.as_str())
            .or_default()
            .record(ok, duration);
        if ok && was_up == Some(false) {
            tracing::info!("source {} is back", source.as_str());
        }
    }

    /// Starts the poller and the destroy listener on their own threads.
    pub fn start(self: &Arc<Self>) {
        let exporter = Arc::clone(self);
        std::thread::Builder::new()
            .name("poller".into())
            .spawn(move || exporter.poll_loop())
            .expect("cannot start the poller thread");
        let exporter = Arc::clone(self);
        std::thread::Builder::new()
            .name("destroy-listener".into())
            .spawn(move || exporter.destroy_loop())
            .expect("cannot start the destroy-listener thread");
        if let Some(config) = self.tor_control.clone() {
            let exporter = Arc::clone(self);
            let record =
                move |ok: bool, duration: Duration| exporter.record(Source::Tor, ok, duration);
            let state = Arc::clone(&self.tor_state);
            std::thread::Builder::new()
                .name("tor-control".into())
                .spawn(move || tor::run(config, state, Arc::new(record)))
                .expect("cannot start the tor-control thread");
        }
    }

    fn poll_loop(&self) {
        let mut diag: Option<SockDiag> = None;
        let mut backoff = self.interval;
        loop {
            let started = Instant::now();
            let (relay_ok, _) = self.poll_once(&mut diag);
            self.ready.store(true, Ordering::Relaxed);
            // Back off while the relay fails (up to 10 intervals), so a dead relay is not
            // hammered; a failing socket dump costs nothing and must not slow the leak guard.
            backoff = if relay_ok {
                self.interval
            } else {
                (backoff * 2).min(self.interval * 10)
            };
            std::thread::sleep(backoff.saturating_sub(started.elapsed()));
        }
    }

    /// One poll of both sources; returns whether (relay, sockets) succeeded.
    pub fn poll_once(&self, diag: &mut Option<SockDiag>) -> (bool, bool) {
        let started = Instant::now();
        let peers = self.relay.peers();
        self.record(Source::Relay, peers.is_ok(), started.elapsed());
        let peers = match peers {
            Ok(peers) => Some(peers),
            Err(error) => {
                tracing::warn!("relay source failed: {error}");
                None
            }
        };
        let classified: Vec<(&Peer, Route)> = peers
            .iter()
            .flatten()
            .map(|peer| (peer, classify(peer.direction, peer.remote, &self.tor)))
            .collect();
        let keyed: Vec<(ConnKey, Route)> = classified
            .iter()
            .map(|(peer, route)| ((peer.local, peer.remote), *route))
            .collect();

        // The state stays locked from the dump until it is applied: a destroy event handled in
        // between would count a socket's last bytes, and then the older dump sample again.
        let (dump_ok, dump_duration) = {
            let mut state = self.state();
            let started = Instant::now();
            if diag.is_none() {
                *diag = SockDiag::open()
                    .map_err(|error| tracing::warn!("cannot open sock_diag: {error}"))
                    .ok();
            }
            let dump = match diag.as_mut().map(sockets::dump) {
                Some(Ok(dump)) => Some(dump),
                Some(Err(error)) => {
                    tracing::warn!("sockets source failed: {error}");
                    *diag = None;
                    None
                }
                None => None,
            };
            if let (Some(_), Some(dump)) = (&peers, &dump) {
                state.traffic.observe_poll(&keyed, dump, Instant::now());
            }
            (dump.is_some(), started.elapsed())
        };
        self.record(Source::Sockets, dump_ok, dump_duration);

        if peers.is_some() {
            let mut counts = PeerCounts::default();
            for (peer, route) in &classified {
                let slot = match route {
                    Route::Tor => &mut counts.tor,
                    Route::Clearnet => &mut counts.clearnet,
                };
                slot[direction_index(peer.direction)] += 1;
                if *route == Route::Clearnet && enode_names_onion(&peer.enode) {
                    counts.onion_fallback += 1;
                }
            }
            {
                let mut state = self.state();
                state.peers = Some(counts);
                state.polls += 1;
            }
            if self.mode == Mode::OnlyOnion {
                self.guard_leaks(&classified);
            }
        } else {
            self.state().peers = None;
        }
        (peers.is_some(), dump_ok)
    }

    fn guard_leaks(&self, classified: &[(&Peer, Route)]) {
        let clearnet: Vec<(String, String, ConnKey)> = classified
            .iter()
            .filter(|(_, route)| *route == Route::Clearnet)
            .map(|(peer, _)| {
                (
                    peer.id.clone(),
                    peer.enode.clone(),
                    (peer.local, peer.remote),
                )
            })
            .collect();
        let leaks = self.state().guard.observe(clearnet);
        for leak in leaks {
            if leak.new {
                tracing::warn!("clearnet peer connected to an only-onion relay (privacy leak)");
                tracing::debug!(
                    "leak audit: peer id={} enode={} local={} remote={}",
                    leak.id, leak.enode, leak.key.0, leak.key.1
                );
            }
            if !self.enforce {
                continue;
            }
            let started = Instant::now();
            let result = self.relay.remove_peer(&leak.enode);
            let mut state = self.state();
            match result {
                Ok(()) => {
                    state.guard.removals_ok += 1;
                    tracing::info!(
                        "removed leaking peer with admin_removePeer in {:.1} ms",
                        started.elapsed().as_secs_f64() * 1000.0
                    );
                }
                Err(error) => {
                    state.guard.removals_failed += 1;
                    // The relay's error text may quote the peer's enode: debug level only.
                    tracing::warn!("admin_removePeer failed for a leaking peer; details at --log-level debug",);
                    tracing::debug!("admin_removePeer failed: {error}");
                }
            }
        }
    }

    fn destroy_loop(&self) {
        let mut listener: Option<DestroyListener> = None;
        // Overruns of the current listener already added to the state's total.
        let mut counted_overruns = 0;
        loop {
            if listener.is_none() {
                match DestroyListener::open() {
                    Ok(opened) => {
                        listener = Some(opened);
                        counted_overruns = 0;
                    }
                    Err(error) => {
                        tracing::warn!(
                            "cannot subscribe to socket destroy events: {error}; the last bytes of closing peers may be missed"
                        );
                        std::thread::sleep(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let Some(open) = listener.as_mut() else {
                continue;
            };
            let received = open.recv(Duration::from_secs(1));
            let overruns = open.overruns();
            if overruns > counted_overruns {
                self.state().destroy_overruns += overruns - counted_overruns;
                tracing::warn!("the kernel dropped socket destroy events; bytes of sockets closed meanwhile may be missing");
                counted_overruns = overruns;
            }
            match received {
                Ok(sockets) if !sockets.is_empty() => {
                    let now = Instant::now();
                    let mut state = self.state();
                    for socket in &sockets {
                        if let Some(sample) = sockets::sample(socket) {
                            state.traffic.observe_destroyed(sample, now);
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(
                        "socket destroy events failed: {error}; resubscribing"
                    );
                    listener = None;
                }
            }
        }
    }

    /// The Prometheus text exposition of the current state.
    pub fn render(&self) -> String {
        use catalog::*;
        let state = self.state();
        let mut out = Exposition::default();
        if let Some(peers) = state.peers {
            for (metric, values) in [(&PEERS_TOR, peers.tor), (&PEERS_CLEARNET, peers.clearnet)] {
                out.family(metric);
                for (index, direction) in labels::DIRECTION.iter().enumerate() {
                    out.sample(metric, &[direction], values[index] as f64);
                }
            }
            out.single(&ONION_FALLBACK_PEERS, peers.onion_fallback as f64);
        }
        let totals = state.traffic.totals();
        out.single(&INGRESS_TOR, totals.tor_received as f64);
        out.single(&EGRESS_TOR, totals.tor_sent as f64);
        out.single(&INGRESS_CLEARNET, totals.clearnet_received as f64);
        out.single(&EGRESS_CLEARNET, totals.clearnet_sent as f64);
        out.single(&CLEARNET_LEAKS, state.guard.leaks_total as f64);
        out.single(&DESTROY_OVERRUNS, state.destroy_overruns as f64);
        out.family(&LEAK_REMOVALS)
            .sample(&LEAK_REMOVALS, &["ok"], state.guard.removals_ok as f64)
            .sample(
                &LEAK_REMOVALS,
                &["error"],
                state.guard.removals_failed as f64,
            );
        if self.tor_control.is_some() {
            render_tor(
                &mut out,
                &self
                    .tor_state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
        }
        let sources: Vec<(&str, Health)> = Source::ALL
            .iter()
            .filter_map(|source| Some((source.as_str(), *state.health.get(source.as_str())?)))
            .collect();
        out.family(&SOURCE_UP);
        for (name, health) in &sources {
            out.sample(&SOURCE_UP, &[name], if health.up { 1.0 } else { 0.0 });
        }
        out.family(&SOURCE_LAST_SUCCESS);
        for (name, health) in &sources {
            if let Some(at) = health.last_success_unix {
                out.sample(&SOURCE_LAST_SUCCESS, &[name], at);
            }
        }
        out.family(&SOURCE_POLL_DURATION);
        for (name, health) in &sources {
            out.sample(
                &SOURCE_POLL_DURATION,
                &[name],
                health.last_duration.as_secs_f64(),
            );
        }
        out.single(&PROCESS_START_TIME, process_start_time());
        out.family(&BUILD_INFO)
            .sample(&BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1.0);
        out.finish()
    }
}

/// The Tor source's families; health gauges only while connected (unknown otherwise).
fn render_tor(out: &mut Exposition, tor: &TorState) {
    use catalog::*;
    let counters = tor.tracker.counters();
    out.single(&DIALS_TOR, counters.dials_total as f64);
    out.single(&DIALS_TOR_SUCCESS, counters.dials_success_total as f64);
    out.single(
        &DIALS_TOR_ERROR_CIRCUIT,
        counters.dials_error_circuit as f64,
    );
    out.family(&DIALS_TOR_ERRORS);
    for (reason, count) in counters.dial_errors() {
        out.sample(&DIALS_TOR_ERRORS, &[reason.as_str()], count as f64);
    }
    out.single(&TOR_CIRCUITS_BUILT, counters.circuits_built_total as f64);
    out.family(&TOR_CIRCUITS_FAILED);
    for (purpose, reason, count) in counters.circuits_failed() {
        out.sample(&TOR_CIRCUITS_FAILED, &[purpose, reason], count as f64);
    }
    out.family(&TOR_ORCONN_FAILED);
    for (reason, count) in counters.orconn_failed() {
        out.sample(&TOR_ORCONN_FAILED, &[reason], count as f64);
    }
    out.single(
        &TOR_UNPARSED_LINES,
        (tor.unparsed_lines + counters.events_malformed) as f64,
    );
    if tor.connected {
        let health = tor.tracker.health();
        let flag = |value: bool| if value { 1.0 } else { 0.0 };
        if let Some(progress) = health.bootstrap_progress {
            out.single(&TOR_BOOTSTRAP, f64::from(progress) / 100.0);
        }
        if let Some(live) = health.network_live {
            out.single(&TOR_NETWORK_LIVENESS, flag(live));
        }
        if let Some(established) = health.circuit_established {
            out.single(&TOR_CIRCUIT_ESTABLISHED, flag(established));
        }
    }
}
