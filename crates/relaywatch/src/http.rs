//! The exporter's HTTP endpoints: /metrics, /healthz (alive: every worker runs), /readyz
//! (first poll done), served with bounds a hostile or careless client cannot exhaust.
//!
//! axum's `serve` has no connection cap and no idle timeout: 300 idle connections under a
//! 256-fd limit once made every scrape time out. Here at most `max_connections` are open and
//! at most `max_per_client` per client address; a new connection evicts an idle one of the
//! client holding the most (its own, when it is at its share), so a flood from one address
//! never closes another's scrape, and a request in flight is closed only as a last resort.
//! Connections that move no byte for `idle_timeout` are closed, and headers must arrive
//! within `header_timeout`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::exporter::Exporter;
use crate::exposition::CONTENT_TYPE;

pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(exporter)
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exporter.render())
}

async fn healthz(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    if exporter.is_healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a worker thread stopped; the process is exiting\n",
        )
    }
}

async fn readyz(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    if exporter.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first poll\n",
        )
    }
}

/// Bounds of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections per client address; a client over it only ever evicts its own.
    pub max_per_client: usize,
    /// A connection that moves no byte for this long is closed (a stalled body or reader).
    pub idle_timeout: Duration,
    /// Headers must arrive within this; hyper also applies it between keep-alive requests,
    /// so an idle keep-alive connection closes after it (Prometheus simply reconnects).
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Prometheus keeps one connection per target; a few more for probes and people.
        Limits {
            max_connections: 32,
            max_per_client: 8,
            idle_timeout: Duration::from_secs(90),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Bytes last read and written, in milliseconds since the server started.
#[derive(Debug, Default)]
struct Activity {
    read: AtomicU64,
    written: AtomicU64,
}

impl Activity {
    /// A request has arrived and its response is not written yet.
    fn busy(&self) -> bool {
        self.read.load(Ordering::Relaxed) > self.written.load(Ordering::Relaxed)
    }
}

struct Conn {
    client: IpAddr,
    close: Arc<Notify>,
    activity: Arc<Activity>,
}

/// Open connections by age (ids grow).
type Open = Arc<Mutex<BTreeMap<u64, Conn>>>;

/// Which connection to close so that one from `client` fits: that client's own oldest idle
/// one when it is at its share, else the oldest idle one of the client holding the most.
/// Busy connections (a request in flight) only go when their client has nothing else.
fn choose_eviction(open: &BTreeMap<u64, Conn>, client: IpAddr, limits: &Limits) -> Option<u64> {
    let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
    for conn in open.values() {
        *per_client.entry(conn.client).or_default() += 1;
    }
    let victim_client = if per_client.get(&client).copied().unwrap_or(0) >= limits.max_per_client {
        client
    } else if open.len() >= limits.max_connections {
        per_client.into_iter().max_by_key(|(_, count)| *count)?.0
    } else {
        return None;
    };
    let of_client = || {
        open.iter()
            .filter(move |(_, conn)| conn.client == victim_client)
    };
    of_client()
        .find(|(_, conn)| !conn.activity.busy())
        .or_else(|| of_client().next())
        .map(|(id, _)| *id)
}

fn close(open: &Open, id: u64) {
    let removed = open
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&id);
    if let Some(conn) = removed {
        conn.close.notify_one();
    }
}

/// Serves `router` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits) {
    let open: Open = Arc::default();
    let started = Instant::now();
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE/ENFILE: free a descriptor by closing the oldest idle connection, then retry.
                tracing::debug!("accept failed: {error}");
                let oldest = {
                    let open = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let first_idle = open.iter().find(|(_, conn)| !conn.activity.busy());
                    first_idle.or_else(|| open.iter().next()).map(|(id, _)| *id)
                };
                if let Some(id) = oldest {
                    close(&open, id);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let client = peer.ip().to_canonical();
        let id = next_id;
        next_id += 1;
        let conn = Conn {
            client,
            close: Arc::new(Notify::new()),
            activity: Arc::default(),
        };
        let (close_signal, activity) = (Arc::clone(&conn.close), Arc::clone(&conn.activity));
        {
            let mut guard = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            while let Some(victim) = choose_eviction(&guard, client, &limits) {
                if let Some(evicted) = guard.remove(&victim) {
                    evicted.close.notify_one();
                }
            }
            guard.insert(id, conn);
        }
        let open = Arc::clone(&open);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            serve_connection(stream, service, close_signal, activity, limits, started).await;
            open.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    close: Arc<Notify>,
    activity: Arc<Activity>,
    limits: Limits,
    started: Instant,
) {
    let now = millis_since(started);
    activity.read.store(now, Ordering::Relaxed);
    activity.written.store(now, Ordering::Relaxed);
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
        started,
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.idle_timeout));
    loop {
        tokio::select! {
            _ = &mut connection => return,
            _ = close.notified() => return,
            _ = tick.tick() => {
                let last = activity.read.load(Ordering::Relaxed).max(activity.written.load(Ordering::Relaxed));
                let idle = millis_since(started).saturating_sub(last);
                if Duration::from_millis(idle) >= limits.idle_timeout {
                    return;
                }
            }
        }
    }
}

fn millis_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// A stream that remembers when it last read and wrote bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    started: Instant,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            // Strictly after the last write, also within the same millisecond: busy.
            let written = self.activity.written.load(Ordering::Relaxed);
            let now = millis_since(self.started).max(written) + 1;
            self.activity.read.store(now, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            // At or after the last read: idle again once the response is out.
            let read = self.activity.read.load(Ordering::Relaxed);
            let now = millis_since(self.started).max(read);
            self.activity.written.store(now, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(client: &str, busy: bool) -> Conn {
        let activity = Activity::default();
        activity.read.store(u64::from(busy), Ordering::Relaxed);
        Conn {
            client: client.parse().unwrap(),
            close: Arc::new(Notify::new()),
            activity: Arc::new(activity),
        }
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            max_per_client: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn a_client_at_its_share_evicts_its_own_idle_connection() {
        let open: BTreeMap<u64, Conn> = [
            (0, conn("10.0.0.9", false)), // the scraper's
            (1, conn("10.0.0.66", true)),
            (2, conn("10.0.0.66", false)),
        ]
        .into_iter()
        .collect();
        let flooder = "10.0.0.66".parse().unwrap();
        assert_eq!(choose_eviction(&open, flooder, &limits()), Some(2));
        let scraper = "10.0.0.9".parse().unwrap();
        assert_eq!(
            choose_eviction(&open, scraper, &limits()),
            None,
            "room left"
        );
    }

    #[test]
    fn when_full_the_biggest_client_pays_and_busy_connections_go_last() {
        let open: BTreeMap<u64, Conn> = [
            (0, conn("10.0.0.9", false)),
            (1, conn("10.0.0.66", true)),
            (2, conn("10.0.0.77", false)),
            (3, conn("10.0.0.66", true)),
        ]
        .into_iter()
        .collect();
        let newcomer = "10.0.0.88".parse().unwrap();
        // 10.0.0.66 holds the most; both of its connections are busy: its oldest goes.
        assert_eq!(choose_eviction(&open, newcomer, &limits()), Some(1));
    }

    #[test]
    fn a_busy_connection_is_not_idle_until_its_response_is_written() {
        let activity = Activity::default();
        assert!(!activity.busy());
        activity.read.store(5, Ordering::Relaxed);
        assert!(activity.busy());
        activity.written.store(5, Ordering::Relaxed);
        assert!(!activity.busy());
    }
}
