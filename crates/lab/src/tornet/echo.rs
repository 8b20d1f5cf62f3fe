//! The harness's echo server: every onion's probe port forwards here, so readiness probes
//! never touch the relay's own onion port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// Stops (and joins its accept thread) on drop.
pub(crate) struct EchoServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start() -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("cannot bind the tornet echo server")?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("tornet-echo".into())
            .spawn(move || {
                for connection in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(connection) = connection {
                        let _ = std::thread::Builder::new()
                            .name("tornet-echo-conn".into())
                            .spawn(move || echo(connection));
                    }
                }
            })?;
        Ok(EchoServer {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn echo(mut connection: TcpStream) {
    // Probes are short; the timeout only ends connections whose probe gave up silently.
    let _ = connection.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = [0u8; 4096];
    while let Ok(n) = connection.read(&mut buf) {
        if n == 0 || connection.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
