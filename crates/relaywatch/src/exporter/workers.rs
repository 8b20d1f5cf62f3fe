//! The exporter's worker threads, supervised: a worker that stops, by returning or by a
//! panic, is reported at once, so `/healthz` turns red and the process exits for Kubernetes
//! to restart it. A silently dead poller would leave leaks counted but never removed while
//! every probe stays green. A worker with a heartbeat that stops beating (stuck in a call
//! that never returns) counts as stopped too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One supervised worker's liveness.
#[derive(Debug)]
pub struct Worker {
    pub name: &'static str,
    alive: AtomicBool,
    /// Milliseconds since `Workers::epoch` of the last beat, with the limit between beats.
    last_beat: AtomicU64,
    stall_after: Option<Duration>,
}

impl Worker {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// Handed to a worker that promises to beat at least every `stall_after`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    worker: Arc<Worker>,
    epoch: Instant,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.worker
            .last_beat
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The set of workers, and a way to wait for the first one to stop.
#[derive(Debug)]
pub struct Workers {
    list: Mutex<Vec<Arc<Worker>>>,
    stopped: Mutex<Option<&'static str>>,
    changed: Condvar,
    epoch: Instant,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            list: Mutex::default(),
            stopped: Mutex::default(),
            changed: Condvar::new(),
            epoch: Instant::now(),
        }
    }
}

/// Marks the worker stopped when its thread ends, also when it unwinds from a panic.
struct StopGuard {
    worker: Arc<Worker>,
    workers: Arc<Workers>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.worker.alive.store(false, Ordering::Relaxed);
        let mut stopped = self
            .workers
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stopped.get_or_insert(self.worker.name);
        self.workers.changed.notify_all();
    }
}

impl Workers {
    /// Starts `run` on a named thread, supervised.
    pub fn spawn(
        self: &Arc<Self>,
        name: &'static str,
        run: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        self.spawn_inner(name, None, |_| run())
    }

    /// Like [`Workers::spawn`], for a worker that calls [`Heartbeat::beat`] at least every
    /// `stall_after`; one that does not is reported stopped.
    pub fn spawn_with_heartbeat(
        self: &Arc<Self>,
        name: &'static str,
        stall_after: Duration,
        run: impl FnOnce(Heartbeat) + Send + 'static,
    ) -> std::io::Result<()> {
        self.spawn_inner(name, Some(stall_after), run)
    }

    fn spawn_inner(
        self: &Arc<Self>,
        name: &'static str,
        stall_after: Option<Duration>,
        run: impl FnOnce(Heartbeat) + Send + 'static,
    ) -> std::io::Result<()> {
        let worker = Arc::new(Worker {
            name,
            alive: AtomicBool::new(true),
            last_beat: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            stall_after,
        });
        let heartbeat = Heartbeat {
            worker: Arc::clone(&worker),
            epoch: self.epoch,
        };
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::clone(&worker));
        let guard = StopGuard {
            worker,
            workers: Arc::clone(self),
        };
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _guard = guard;
                run(heartbeat);
            });
        // If the thread could not start, the closure (and its guard) was dropped: reported stopped.
        spawned.map(drop)
    }

    fn is_running(&self, worker: &Worker) -> bool {
        let stalled = worker.stall_after.is_some_and(|limit| {
            let now = self.epoch.elapsed().as_millis() as u64;
            let last = worker.last_beat.load(Ordering::Relaxed);
            Duration::from_millis(now.saturating_sub(last)) > limit
        });
        worker.is_alive() && !stalled
    }

    /// Every worker and whether it runs (alive and, with a heartbeat, beating), in start order.
    pub fn snapshot(&self) -> Vec<(&'static str, bool)> {
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|worker| (worker.name, self.is_running(worker)))
            .collect()
    }

    /// The first worker that stopped or stalled, if any.
    pub fn first_stopped(&self) -> Option<&'static str> {
        let stopped = *self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stopped.or_else(|| {
            self.snapshot()
                .into_iter()
                .find(|(_, running)| !running)
                .map(|(name, _)| name)
        })
    }

    /// Blocks until a worker stops or stalls; returns its name.
    pub fn wait_for_a_stop(&self) -> &'static str {
        loop {
            if let Some(name) = self.first_stopped() {
                return name;
            }
            let stopped = self
                .stopped
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Stops notify at once; stalls are found by looking once a second.
            let _ = self
                .changed
                .wait_timeout(stopped, Duration::from_secs(1))
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_panicking_worker_is_reported_stopped() {
        let workers = Arc::new(Workers::default());
        let (release, hold) = std::sync::mpsc::channel::<()>();
        workers
            .spawn("steady", move || {
                let _ = hold.recv();
            })
            .unwrap();
        assert_eq!(workers.first_stopped(), None);
        workers
            .spawn("fragile", || panic!("worker died (expected in this test)"))
            .unwrap();
        assert_eq!(workers.wait_for_a_stop(), "fragile");
        let snapshot = workers.snapshot();
        assert_eq!(snapshot, [("steady", true), ("fragile", false)]);
        drop(release);
        // The first stop stays the one reported.
        for _ in 0..100 {
            if !workers.snapshot()[0].1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(workers.first_stopped(), Some("fragile"));
    }

    #[test]
    fn a_worker_that_stops_beating_is_reported() {
        let workers = Arc::new(Workers::default());
        let (release, hold) = std::sync::mpsc::channel::<()>();
        workers
            .spawn_with_heartbeat("stuck", Duration::from_millis(50), move |heartbeat| {
                heartbeat.beat();
                let _ = hold.recv(); // a call that never returns
            })
            .unwrap();
        assert_eq!(workers.wait_for_a_stop(), "stuck");
        assert_eq!(workers.snapshot(), [("stuck", false)]);
        drop(release);
    }

    #[test]
    fn a_worker_that_returns_is_stopped_too() {
        let workers = Arc::new(Workers::default());
        workers.spawn("once", || {}).unwrap();
        assert_eq!(workers.wait_for_a_stop(), "once");
    }
}
