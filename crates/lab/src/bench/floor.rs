//! The floors: static servers that answer every request with the exporter's own /metrics
//! bytes and do nothing else, each in its own process, so a scrape of a floor crosses the
//! same process boundary as a scrape of the exporter.
//!
//! - `axum`: the exporter's stack (an axum Router served by hyper's HTTP/1.1 connection
//!   builder on a tokio current-thread runtime), without its connection bookkeeping.
//!   The exporter's latency over this floor is what the exporter itself adds: rendering,
//!   and any wait for or contention with a poll. Issue 9's goal (p99 ≤ 1.5×) is against it.
//! - `std`: a blocking thread per connection writing one prebuilt buffer; what any HTTP
//!   stack costs on this machine, for reference.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{self, Child};

/// The Content-Type of Prometheus text format 0.0.4, as the exporter sends it.
pub const EXPOSITION_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    Axum,
    Std,
}

impl FloorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FloorKind::Axum => "axum",
            FloorKind::Std => "std",
        }
    }

    pub fn parse(text: &str) -> Option<FloorKind> {
        match text {
            "axum" => Some(FloorKind::Axum),
            "std" => Some(FloorKind::Std),
            _ => None,
        }
    }
}

/// Serves `body_file` on `addr` until killed: `relaywatch-lab --serve-floor KIND FILE ADDR`.
pub fn serve_floor(kind: FloorKind, body_file: &Path, addr: SocketAddr) -> Result<()> {
    let body = std::fs::read(body_file)
        .with_context(|| format!("reading the floor's body {}", body_file.display()))?;
    let listener =
        TcpListener::bind(addr).with_context(|| format!("floor: listening on {addr}"))?;
    match kind {
        FloorKind::Std => {
            let _server = super::http::static_server(listener, EXPOSITION_TYPE, &body)?;
            // The server runs on its own threads; this one only keeps the process alive.
            loop {
                std::thread::park();
            }
        }
        FloorKind::Axum => serve_axum(listener, body),
    }
}

fn serve_axum(listener: TcpListener, body: Vec<u8>) -> Result<()> {
    use axum::http::header::CONTENT_TYPE;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    // The exporter's runtime: one thread, everything on it (see relaywatch's main.rs).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("floor: starting a tokio runtime")?;
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .context("floor: O_NONBLOCK")?;
        let listener =
            tokio::net::TcpListener::from_std(listener).context("floor: tokio listener")?;
        let body = axum::body::Bytes::from(body);
        // As relaywatch's http.rs serves: an axum Router through hyper's HTTP/1.1 connection
        // builder with a header timeout; without its connection cap and idle bookkeeping.
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, EXPOSITION_TYPE)], body) }
            }),
        );
        loop {
            let (stream, _) = listener.accept().await.context("floor: accept")?;
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                // A client that goes away ends its connection; nothing to report.
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A floor process serving `body`, started through `process::spawn` like every lab child.
pub struct Floor {
    pub kind: FloorKind,
    pub addr: SocketAddr,
    /// Stopped when the floor is dropped.
    child: Child,
}

impl Floor {
    pub fn start(kind: FloorKind, body: &[u8], ip: IpAddr, dir: &Path) -> Result<Floor> {
        let body_file = dir.join(format!("floor-{}.body", kind.as_str()));
        std::fs::write(&body_file, body)
            .with_context(|| format!("writing {}", body_file.display()))?;
        let addr = TcpListener::bind((ip, 0))
            .and_then(|probe| probe.local_addr())
            .context("finding a port for a floor")?;
        let mut command = Command::new(crate::workspace_binary("relaywatch-lab")?);
        command
            .arg("--serve-floor")
            .arg(kind.as_str())
            .arg(&body_file)
            .arg(addr.to_string());
        let name = format!("floor-{}", kind.as_str());
        let log = dir.join(format!("{name}.log"));
        let mut child = process::spawn(&name, command, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if !child.is_running() || Instant::now() > deadline {
                bail!(
                    "the {name} floor did not listen on {addr}; log {}:\n{}",
                    log.display(),
                    crate::relays::tail(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Floor { kind, addr, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}
