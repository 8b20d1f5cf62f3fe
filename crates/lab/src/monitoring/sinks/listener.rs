//! A loopback TCP accept loop that hands each connection to its own thread.
//!
//! A bad client can only break its own connection thread; the accept loop keeps going. If the
//! accept loop itself gives up (the listening socket fails persistently), [`Listener::is_healthy`]
//! turns false and [`Listener::error`] says why, so the lab can show a dead sink.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// At most this many connections are served at once; more are closed at once (Alertmanager
/// opens one or two).
const MAX_CONNECTIONS: usize = 64;
/// Consecutive accept errors after which the loop gives up and reports itself unhealthy.
const MAX_ACCEPT_ERRORS: u32 = 100;

pub(super) type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

pub(super) struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds a free port on 127.0.0.1 and serves each connection with `handler` on its own thread.
    pub fn start(name: &str, handler: Handler) -> Result<Listener> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .with_context(|| format!("{name}: cannot bind 127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, error, owned_name) = (stop.clone(), error.clone(), name.to_string());
            std::thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || accept_loop(&owned_name, listener, handler, &stop, &error))
                .with_context(|| format!("{name}: cannot start its accept thread"))?
        };
        Ok(Listener {
            addr,
            stop,
            error,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True while the accept loop runs.
    pub fn is_healthy(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
            && self.error().is_none()
    }

    /// Why the accept loop stopped, if it did.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the loop sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    name: &str,
    listener: TcpListener,
    handler: Handler,
    stop: &AtomicBool,
    error: &Mutex<Option<String>>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut consecutive_errors = 0;
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(accept_error) => {
                // EMFILE or a connection reset before accept: wait and retry, up to a point.
                consecutive_errors += 1;
                if consecutive_errors >= MAX_ACCEPT_ERRORS {
                    *error.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(format!(
                        "{name}: accept failed {consecutive_errors} times in a row: {accept_error}"
                    ));
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        consecutive_errors = 0;
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(active.clone());
        let handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-conn"))
            .spawn(move || {
                let _guard = guard;
                handler(stream);
            });
        if spawned.is_err() {
            // The closure (and its guard) was dropped: the count is already back.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Gives a connection slot back when its thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
