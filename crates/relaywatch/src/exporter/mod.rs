//! The exporter: polls the sources, keeps the state behind the metrics, renders /metrics.
//!
//! Threads, each supervised by [`workers::Workers`] (one that stops makes the process
//! unhealthy): the poller (admin_peers, a socket dump, leak detection), the destroy listener
//! (final counters of closed sockets), the tor-control reader, and a few leak removers.
//!
//! Locks: `traffic` is held by the poller across a dump and its application, and by the
//! destroy listener (so a destroy event cannot land between the two and count bytes twice).
//! Everything a scrape reads is in `published`, which is only ever held for a copy, so a
//! scrape never waits for a poll. Order when both are held: `traffic`, then `published`.

mod poll;
mod remover;
mod render;
mod schedule;
pub mod workers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::classify::TorEndpoints;
use crate::cli::{ExporterArgs, Mode};
use crate::leak_guard::LeakGuard;
use crate::sources::relay::RelayClient;
use crate::sources::tor::{TorControlConfig, TorState};
use crate::sources::{sockets, tor, Health, Source};
use crate::traffic::{Totals, Traffic};

use remover::RemovalQueue;
use workers::Workers;

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
    /// By direction, in the order of `catalog::labels::DIRECTION`.
    tor: [u64; 3],
    clearnet: [u64; 3],
    onion_fallback: u64,
}

/// What a scrape shows; copied in and out, never held across IO.
#[derive(Debug, Default)]
struct Published {
    peers: Option<PeerCounts>,
    traffic: Totals,
    leaks_total: u64,
    removals_ok: u64,
    removals_failed: u64,
    unparsed_peers: u64,
    health: HashMap<&'static str, Health>,
    /// ENOBUFS on the destroy-event socket, over every listener this process opened.
    destroy_overruns: u64,
    /// `Traffic::destroy_events_dropped`.
    destroy_events_dropped: u64,
}

/// The exporter's shared state and configuration.
pub struct Exporter {
    mode: Mode,
    enforce: bool,
    tor: TorEndpoints,
    interval: Duration,
    /// How often the socket counters are dumped (every poll if this is not longer).
    sockets_interval: Duration,
    relay: RelayClient,
    traffic: Mutex<Traffic>,
    guard: Mutex<LeakGuard>,
    published: Mutex<Published>,
    removals: RemovalQueue,
    removal_warned_at: Mutex<Option<std::time::Instant>>,
    removal_failures_unlogged: std::sync::atomic::AtomicU64,
    workers: Arc<Workers>,
    ready: AtomicBool,
    tor_control: Option<TorControlConfig>,
    tor_state: Arc<Mutex<TorState>>,
    /// The relay's ports: the kernel shows us only those sockets and their destroy events.
    relay_ports: sockets::RelayPorts,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not take the metrics down with it (the worker that
    // panicked is reported by the supervisor).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Exporter {
    pub fn new(args: &ExporterArgs, tor_control: Option<TorControlConfig>) -> Arc<Exporter> {
        Arc::new(Exporter {
            tor_control,
            tor_state: Arc::new(Mutex::new(TorState::default())),
            relay_ports: sockets::RelayPorts::new(args.tor_proxy),
            mode: args.mode,
            enforce: args.enforce && args.mode == Mode::OnlyOnion,
            tor: args.tor_endpoints(),
            interval: args.poll_interval,
            sockets_interval: args.sockets_interval,
            relay: RelayClient::new(&args.relay_admin_url),
            traffic: Mutex::new(Traffic::default()),
            guard: Mutex::new(LeakGuard::default()),
            published: Mutex::new(Published::default()),
            removals: RemovalQueue::default(),
            removal_warned_at: Mutex::new(None),
            removal_failures_unlogged: std::sync::atomic::AtomicU64::new(0),
            workers: Arc::new(Workers::default()),
            ready: AtomicBool::new(false),
        })
    }

    /// True once a first poll has run (successful or not).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// False once any worker thread has stopped: /healthz fails and `main` exits.
    pub fn is_healthy(&self) -> bool {
        self.workers.first_stopped().is_none()
    }

    /// The supervisor, for `main` to wait on.
    pub fn workers(&self) -> Arc<Workers> {
        Arc::clone(&self.workers)
    }

    fn published(&self) -> MutexGuard<'_, Published> {
        lock(&self.published)
    }

    fn record(&self, source: Source, ok: bool, duration: Duration) {
        let mut published = self.published();
        let was_up = published
            .health
            .get(source.as_str())
            .map(|health| health.up);
        published
            .health
            .entry(source.as_str())
            .or_default()
            .record(ok, duration);
        drop(published);
        if ok && was_up == Some(false) {
            tracing::info!("source {} is back", source.as_str());
        }
    }

    /// Starts every worker thread. An error means one could not start; the process should exit.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let exporter = Arc::clone(self);
        // A poll cycle is at most a 3 s admin call, a dump, and a backoff of 10 intervals.
        let stall_after = self.interval * 10 + Duration::from_secs(60);
        self.workers
            .spawn_with_heartbeat("poller", stall_after, move |heartbeat| {
                exporter.poll_loop(&heartbeat)
            })?;
        let exporter = Arc::clone(self);
        self.workers
            .spawn("destroy-listener", move || exporter.destroy_loop())?;
        if self.enforce {
            for _ in 0..remover::REMOVERS {
                let exporter = Arc::clone(self);
                self.workers
                    .spawn("leak-remover", move || exporter.remove_loop())?;
            }
        }
        if let Some(config) = self.tor_control.clone() {
            let exporter = Arc::clone(self);
            let record =
                move |ok: bool, duration: Duration| exporter.record(Source::Tor, ok, duration);
            let state = Arc::clone(&self.tor_state);
            self.workers.spawn("tor-control", move || {
                tor::run(config, state, Arc::new(record))
            })?;
        }
        Ok(())
    }

    /// A leak remover: takes enodes the poller queued and calls admin_removePeer.
    fn remove_loop(&self) {
        loop {
            let enode = self.removals.take();
            let started = std::time::Instant::now();
            let result = self.relay.remove_peer(&enode);
            {
                let mut published = self.published();
                match &result {
                    Ok(()) => published.removals_ok += 1,
                    Err(_) => published.removals_failed += 1,
                }
            }
            self.removals.done(&enode);
            match result {
                Ok(()) => tracing::info!(
                    "removed a leaking peer with admin_removePeer in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                ),
                Err(error) => {
                    // The relay's error text may quote the peer's enode: a class only by default,
                    // and at most one line a minute (every failure is in the counter).
                    let failures = self
                        .removal_failures_unlogged
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    let mut last = lock(&self.removal_warned_at);
                    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                        *last = Some(std::time::Instant::now());
                        self.removal_failures_unlogged.store(0, Ordering::Relaxed);
                        tracing::warn!(
                            "admin_removePeer failed for a leaking peer ({}; {failures} failure(s) since the last such line); details at --log-level debug",
                            error.class()
                        );
                    }
                    tracing::debug!("admin_removePeer failed: {error}");
                }
            }
        }
    }
}
