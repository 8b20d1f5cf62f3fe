//! Just enough HTTP/1.1 over std TCP for the benchmarks: a keep-alive client that keeps one
//! connection (as Prometheus does per target), and a thread-per-connection server used for
//! the synthetic relay's admin API and for the static "floor" server.
//!
//! Not a general HTTP implementation: no pipelining, no `Expect`, heads up to 64 KiB.
//! Written by hand rather than with ureq so that the client provably reuses one connection
//! (`connections` counts every connect) and costs the same for the exporter and the floor.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

const MAX_HEAD_BYTES: usize = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request or response head: the start line and the headers we need.
#[derive(Debug, Default)]
struct Head {
    start: String,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// Reads a head up to its blank line; `None` at a clean end of stream before any byte.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut head = Head::default();
    let mut line = String::new();
    let mut total = 0;
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            return if total == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "head cut short",
                ))
            };
        }
        total += read;
        if total > MAX_HEAD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            if head.start.is_empty() {
                continue; // tolerated blank lines between messages (RFC 9112 §2.2)
            }
            return Ok(Some(head));
        }
        if head.start.is_empty() {
            head.start = trimmed.to_string();
            continue;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length = Some(value.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad content-length")
                })?)
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
}

/// Reads a body as the head describes it (Content-Length or chunked; none means empty).
fn read_body(reader: &mut impl BufRead, head: &Head) -> io::Result<Vec<u8>> {
    if !head.chunked {
        let mut body = vec![0; head.content_length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?; // the CRLF after the chunk
    }
}

/// One keep-alive connection to one server, reopened only if the server closes it.
pub struct KeepAlive {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
    /// Connections opened so far; 1 for a whole run means every request reused the first.
    pub connections: u32,
}

impl KeepAlive {
    /// Connects now, so the first timed request does not include the handshake.
    pub fn connect(addr: SocketAddr) -> Result<KeepAlive> {
        let mut client = KeepAlive {
            addr,
            connection: None,
            connections: 0,
        };
        client.open()?;
        Ok(client)
    }

    fn open(&mut self) -> Result<&mut BufReader<TcpStream>> {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to {}", self.addr))?;
        // Prometheus (Go) sets TCP_NODELAY on every connection; so do we.
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .context("SO_RCVTIMEO")?;
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .context("SO_SNDTIMEO")?;
        self.connections += 1;
        Ok(self
            .connection
            .insert(BufReader::with_capacity(64 * 1024, stream)))
    }

    /// GET `path`; returns the status code and body. A request on a connection the server
    /// had already closed is retried once on a new connection (counted in `connections`).
    pub fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nUser-Agent: relaywatch-lab-bench\r\n\r\n",
            self.addr
        );
        let reused = self.connection.is_some();
        match self.exchange(request.as_bytes()) {
            Ok(answer) => Ok(answer),
            Err(_) if reused => {
                self.connection = None;
                self.exchange(request.as_bytes())
            }
            Err(error) => Err(error),
        }
        .with_context(|| format!("GET http://{}{path}", self.addr))
    }

    fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self.open()?,
        };
        connection.get_mut().write_all(request)?;
        let head = read_head(connection)?.context("connection closed before a response")?;
        let status = head
            .start
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("bad status line {:?}", head.start))?;
        let body = read_body(connection, &head)?;
        if head.close {
            self.connection = None;
        }
        Ok((status, body))
    }
}

/// What a server's handler sees.
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Writes the whole response (head and body) for one request.
pub type Handler = dyn Fn(&Request, &mut dyn Write) -> io::Result<()> + Send + Sync;

/// A thread-per-connection HTTP/1.1 server with keep-alive; stops accepting when dropped
/// (open connections end when their clients close them).
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(listener: TcpListener, name: &str, handler: Arc<Handler>) -> Result<Server> {
        let addr = listener.local_addr().context("listener address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = Arc::clone(&handler);
                    // A connection that cannot get a thread is dropped; the client sees it.
                    let _ = std::thread::Builder::new()
                        .name("bench-http-conn".into())
                        .spawn(move || serve_connection(stream, &*handler));
                }
            })
            .with_context(|| format!("starting the {name} thread"))?;
        Ok(Server { addr, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Ok(Some(head)) = read_head(&mut reader) {
        let Ok(body) = read_body(&mut reader, &head) else {
            break;
        };
        let mut parts = head.start.split_whitespace();
        let request = Request {
            method: parts.next().unwrap_or_default().to_string(),
            path: parts.next().unwrap_or_default().to_string(),
            body,
        };
        if handler(&request, &mut writer).is_err() || head.close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// A whole `200 OK` response as bytes, written in one `write` by the servers here.
pub fn ok_response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// The floor: a server that answers every request with the same bytes, doing nothing else.
pub fn static_server(listener: TcpListener, content_type: &str, body: &[u8]) -> Result<Server> {
    let response = ok_response(content_type, body);
    Server::start(
        listener,
        "bench-floor",
        Arc::new(move |_: &Request, out: &mut dyn Write| out.write_all(&response)),
    )
}

/// Fails unless a status is 200, naming what was asked.
pub fn expect_ok(status: u16, what: &str) -> Result<()> {
    if status != 200 {
        bail!("{what}: HTTP {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_reuses_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = static_server(listener, "text/plain", b"hello").unwrap();
        let mut client = KeepAlive::connect(server.addr).unwrap();
        for _ in 0..5 {
            assert_eq!(client.get("/metrics").unwrap(), (200, b"hello".to_vec()));
        }
        assert_eq!(client.connections, 1);
    }

    #[test]
    fn reads_chunked_bodies() {
        let mut input: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        let head = read_head(&mut input).unwrap().unwrap();
        assert!(head.chunked);
        assert_eq!(read_body(&mut input, &head).unwrap(), b"hello!");
    }

    #[test]
    fn reconnects_when_the_server_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::start(
            listener,
            "test-close",
            Arc::new(|_: &Request, out: &mut dyn Write| {
                out.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                )
            }),
        )
        .unwrap();
        let mut client = KeepAlive::connect(server.addr).unwrap();
        assert_eq!(client.get("/").unwrap().1, b"ok");
        assert_eq!(client.get("/").unwrap().1, b"ok");
        assert_eq!(client.connections, 2);
    }
}
