//! The exporter's HTTP endpoints: /metrics, /healthz (alive: every worker runs), /readyz
//! (first poll done), served with bounds a hostile or careless client cannot exhaust.
//!
//! axum's `serve` has no connection cap and no idle timeout: 300 idle connections under a
//! 256-fd limit once made every scrape time out. Here at most `max_connections` are open;
//! a new one evicts the oldest (so a scraper always gets in), a connection idle for
//! `idle_timeout` is closed, and request headers must arrive within `header_timeout`.

use std::collections::BTreeMap;
use std::io;
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
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Prometheus keeps one connection per target; a few more for probes and people.
        Limits {
            max_connections: 32,
            idle_timeout: Duration::from_secs(90),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Open connections by age (ids grow), each with a way to close it.
type Open = Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>;

/// Serves `router` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits) {
    let open: Open = Arc::default();
    let started = Instant::now();
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // EMFILE/ENFILE: free a descriptor by closing the oldest connection, then retry.
                tracing::debug!("accept failed: {error}");
                evict_oldest(&open);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let close = Arc::new(Notify::new());
        let id = next_id;
        next_id += 1;
        {
            let mut open = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            open.insert(id, Arc::clone(&close));
            while open.len() > limits.max_connections {
                if let Some((_, oldest)) = open.pop_first() {
                    oldest.notify_one();
                }
            }
        }
        let open = Arc::clone(&open);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            serve_connection(stream, service, close, limits, started).await;
            open.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
        });
    }
}

fn evict_oldest(open: &Open) {
    let oldest = open
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop_first();
    if let Some((_, close)) = oldest {
        close.notify_one();
    }
}

async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    close: Arc<Notify>,
    limits: Limits,
    started: Instant,
) {
    let last_active = Arc::new(AtomicU64::new(millis_since(started)));
    let io = TokioIo::new(Tracked {
        inner: stream,
        last_active: Arc::clone(&last_active),
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
                let idle = millis_since(started).saturating_sub(last_active.load(Ordering::Relaxed));
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

/// A stream that remembers when it last carried bytes.
struct Tracked {
    inner: TcpStream,
    last_active: Arc<AtomicU64>,
    started: Instant,
}

impl Tracked {
    fn touch(&self) {
        self.last_active
            .store(millis_since(self.started), Ordering::Relaxed);
    }
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
            self.touch();
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
            self.touch();
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
