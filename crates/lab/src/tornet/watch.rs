//! One watcher thread per node tor, from its start until it has bootstrapped and published.
//!
//! The watcher subscribes to HS_DESC right after tor starts, because the first `UPLOADED`
//! event comes seconds later and is never repeated for a late subscriber.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::control::{bootstrap_progress, ControlConnection};
use super::TorNode;

const BOOTSTRAP_POLL: Duration = Duration::from_millis(250);
const EVENT_WAIT: Duration = Duration::from_millis(100);

/// What the watchers found out so far, by node index.
pub(super) struct Progress {
    nodes: Mutex<Vec<NodeState>>,
    /// Set when the network drops: watchers end within ~100 ms.
    pub stopping: AtomicBool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct NodeState {
    pub bootstrapped: Option<Instant>,
    /// The first `650 HS_DESC UPLOADED`.
    pub uploaded: Option<Instant>,
    /// The latest `status/bootstrap-phase` value.
    pub phase: String,
    /// The latest control-port trouble, for the not-ready error.
    pub note: String,
}

impl Progress {
    pub fn new(nodes: usize) -> Self {
        Progress {
            nodes: Mutex::new(vec![NodeState::default(); nodes]),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn snapshot(&self) -> Vec<NodeState> {
        self.nodes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut NodeState)) {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        change(&mut nodes[index]);
    }

    fn get(&self, index: usize) -> NodeState {
        self.nodes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())[index]
            .clone()
    }
}

struct Watch {
    index: usize,
    control_addr: SocketAddr,
    cookie_path: PathBuf,
    has_onion: bool,
    progress: Arc<Progress>,
}

pub(super) fn spawn_watcher(
    index: usize,
    node: &TorNode,
    progress: Arc<Progress>,
) -> Result<JoinHandle<()>> {
    let watch = Watch {
        index,
        control_addr: node.control_addr,
        cookie_path: node.cookie_path.clone(),
        has_onion: node.onion.is_some(),
        progress,
    };
    std::thread::Builder::new()
        .name(format!("tornet-watch-{}", node.name))
        .spawn(move || watch.run())
        .context("cannot start a tornet watcher thread")
}

impl Watch {
    fn stopping(&self) -> bool {
        self.progress.stopping.load(Ordering::SeqCst)
    }

    fn done(&self) -> bool {
        let state = self.progress.get(self.index);
        state.bootstrapped.is_some() && (!self.has_onion || state.uploaded.is_some())
    }

    /// Reconnects until done: the control port opens a moment after tor starts, and the
    /// cookie file is rewritten at that moment.
    fn run(self) {
        while !self.stopping() && !self.done() {
            if let Err(error) = self.watch_once() {
                self.progress
                    .update(self.index, |state| state.note = format!("{error:#}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn watch_once(&self) -> Result<()> {
        let mut control = ControlConnection::connect(
            self.control_addr,
            &self.cookie_path,
            Duration::from_secs(1),
        )?;
        control.command("SETEVENTS HS_DESC")?;
        let mut next_poll = Instant::now();
        while !self.stopping() && !self.done() {
            if self.progress.get(self.index).bootstrapped.is_none() && Instant::now() >= next_poll {
                let phase = control.getinfo("status/bootstrap-phase")?;
                let done = bootstrap_progress(&phase) == Some(100);
                self.progress.update(self.index, |state| {
                    state.phase = phase;
                    if done {
                        state.bootstrapped = Some(Instant::now());
                    }
                });
                next_poll = Instant::now() + BOOTSTRAP_POLL;
            }
            if let Some(event) = control.next_event(EVENT_WAIT)? {
                if event
                    .first()
                    .is_some_and(|line| line.starts_with("HS_DESC UPLOADED "))
                {
                    self.progress.update(self.index, |state| {
                        state.uploaded.get_or_insert_with(Instant::now);
                    });
                }
            }
        }
        Ok(())
    }
}
