//! Leak removal off the poll loop: the poller only enqueues; a few remover threads call
//! admin_removePeer. A hanging admin API (3 s timeout per call) once stretched one poll to
//! 40 s with 202 leaks, so detection and counting must never wait on removal.
//!
//! The queue holds each enode at most once (queued or in flight) and at most `MAX_QUEUED`
//! enodes; a leak that does not fit is enqueued again at the next poll while it is listed.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// Removals in flight at once: enough to drain a burst, few enough not to flood the relay.
pub const REMOVERS: usize = 4;
/// Enodes waiting at most; gethrelay's peer limit is far below this.
pub const MAX_QUEUED: usize = 1024;

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<String>,
    /// Waiting or in flight.
    pending: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct RemovalQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl RemovalQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks for `enode` to be removed; false when it is already pending or the queue is full.
    /// Never blocks on a removal.
    pub fn enqueue(&self, enode: &str) -> bool {
        let mut queue = self.lock();
        if queue.pending.contains(enode) || queue.waiting.len() >= MAX_QUEUED {
            return false;
        }
        queue.pending.insert(enode.to_string());
        queue.waiting.push_back(enode.to_string());
        self.ready.notify_one();
        true
    }

    /// Enodes waiting or being removed.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Blocks until an enode is waiting and takes it; call [`RemovalQueue::done`] after.
    pub fn take(&self) -> String {
        let mut queue = self.lock();
        loop {
            if let Some(enode) = queue.waiting.pop_front() {
                return enode;
            }
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The removal of `enode` finished (either way): it may be enqueued again.
    pub fn done(&self, enode: &str) {
        self.lock().pending.remove(enode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn each_enode_is_pending_once() {
        let queue = RemovalQueue::default();
        assert!(queue.enqueue("a"));
        assert!(!queue.enqueue("a"), "already waiting");
        assert!(queue.enqueue("b"));
        assert_eq!(queue.take(), "a");
        assert!(!queue.enqueue("a"), "in flight");
        assert_eq!(queue.pending(), 2);
        queue.done("a");
        assert!(queue.enqueue("a"), "removed, listed again: a new try");
    }

    #[test]
    fn the_queue_is_bounded() {
        let queue = RemovalQueue::default();
        for index in 0..MAX_QUEUED {
            assert!(queue.enqueue(&index.to_string()));
        }
        assert!(!queue.enqueue("one too many"));
        assert_eq!(queue.pending(), MAX_QUEUED);
    }

    #[test]
    fn enqueue_never_waits_for_a_hanging_removal() {
        let queue = Arc::new(RemovalQueue::default());
        let (release, hang) = std::sync::mpsc::channel::<()>();
        let worker = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let enode = queue.take();
                let _ = hang.recv(); // an admin_removePeer that does not answer
                queue.done(&enode);
            })
        };
        assert!(queue.enqueue("hanging"));
        while queue.lock().waiting.len() == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for index in 0..500 {
            assert!(queue.enqueue(&format!("leak-{index}")));
        }
        assert_eq!(queue.pending(), 501);
        drop(release);
        worker.join().unwrap();
        assert_eq!(queue.pending(), 500);
    }
}
