//! The exporter's worker threads, supervised: a worker that stops, by returning or by a
//! panic, is reported at once, so `/healthz` turns red and the process exits for Kubernetes
//! to restart it. A silently dead poller would leave leaks counted but never removed while
//! every probe stays green.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// One supervised worker's liveness.
#[derive(Debug)]
pub struct Worker {
    pub name: &'static str,
    alive: AtomicBool,
}

impl Worker {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// The set of workers, and a way to wait for the first one to stop.
#[derive(Debug, Default)]
pub struct Workers {
    list: Mutex<Vec<Arc<Worker>>>,
    stopped: Mutex<Option<&'static str>>,
    changed: Condvar,
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
        let worker = Arc::new(Worker {
            name,
            alive: AtomicBool::new(true),
        });
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
                run();
            });
        // If the thread could not start, the closure (and its guard) was dropped: reported stopped.
        spawned.map(drop)
    }

    /// Every worker and whether it runs, in start order.
    pub fn snapshot(&self) -> Vec<(&'static str, bool)> {
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|worker| (worker.name, worker.is_alive()))
            .collect()
    }

    /// The first worker that stopped, if any.
    pub fn first_stopped(&self) -> Option<&'static str> {
        *self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until a worker stops; returns its name.
    pub fn wait_for_a_stop(&self) -> &'static str {
        let mut stopped = self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if let Some(name) = *stopped {
                return name;
            }
            stopped = self
                .changed
                .wait(stopped)
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
    fn a_worker_that_returns_is_stopped_too() {
        let workers = Arc::new(Workers::default());
        workers.spawn("once", || {}).unwrap();
        assert_eq!(workers.wait_for_a_stop(), "once");
    }
}
