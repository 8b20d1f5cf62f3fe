//! A minimal HTTP/1.1 server on loopback: enough for Alertmanager's webhook POSTs and for a
//! test's scrape target, with bounded heads and bodies, timeouts, and keep-alive.
//!
//! Not a general server: no chunked request bodies (Go's client sends a Content-Length for the
//! buffered bodies Alertmanager and Prometheus post), no pipelining beyond reading requests in
//! order, no TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use super::listener::Listener;

/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request line and the headers this server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub content_length: usize,
    /// The client asked to close after this request (`Connection: close` or HTTP/1.0).
    pub close: bool,
}

/// A whole request.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Parses a request head (everything before the blank line, without it).
pub fn parse_head(head: &[u8]) -> Result<RequestHead> {
    if head.len() > MAX_HEAD {
        bail!("request head longer than {MAX_HEAD} bytes");
    }
    let text =
        std::str::from_utf8(head).map_err(|_| anyhow::anyhow!("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n").flat_map(|line| line.split('\n'));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("malformed request line `{}`", request_line.escape_debug());
    };
    if method.is_empty() || !method.bytes().all(|byte| byte.is_ascii_uppercase()) {
        bail!("malformed method `{}`", method.escape_debug());
    }
    if !path.starts_with('/') {
        bail!("malformed path `{}`", path.escape_debug());
    }
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        other => bail!("unsupported version `{}`", other.escape_debug()),
    };
    let mut content_length = None;
    for line in lines.filter(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            bail!("malformed header line `{}`", line.escape_debug());
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let length: usize = value.parse().map_err(|_| {
                    anyhow::anyhow!("bad Content-Length `{}`", value.escape_debug())
                })?;
                if content_length.is_some_and(|other| other != length) {
                    bail!("conflicting Content-Length headers");
                }
                content_length = Some(length);
            }
            "transfer-encoding" => bail!(
                "Transfer-Encoding `{}` is not supported; send a Content-Length",
                value.escape_debug()
            ),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        bail!("body of {content_length} bytes is larger than {MAX_BODY}");
    }
    Ok(RequestHead {
        method: method.to_string(),
        path: path.to_string(),
        content_length,
        close,
    })
}

/// A running server; stops when dropped.
pub struct HttpServer {
    listener: Listener,
}

impl HttpServer {
    /// Serves `handler` on a free port of 127.0.0.1.
    pub fn start(
        name: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Result<HttpServer> {
        let handler = Arc::new(handler);
        let listener = Listener::start(
            name,
            Arc::new(move |stream: TcpStream| serve_connection(stream, handler.as_ref())),
        )?;
        Ok(HttpServer { listener })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// True while the accept loop runs.
    pub fn is_healthy(&self) -> bool {
        self.listener.is_healthy()
    }

    pub fn error(&self) -> Option<String> {
        self.listener.error()
    }
}

fn serve_connection(stream: TcpStream, handler: &(dyn Fn(&Request) -> Response + Send + Sync)) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            // The client closed, or went idle past the timeout: done.
            Ok(None) | Err(_) => return,
        };
        let head = match parse_head(&head) {
            Ok(head) => head,
            Err(error) => {
                let _ = write_response(
                    &mut writer,
                    &Response::text(400, &format!("{error}\n")),
                    true,
                );
                return;
            }
        };
        let mut body = vec![0; head.content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let close = head.close;
        let response = handler(&Request { head, body });
        if write_response(&mut writer, &response, close).is_err() || close {
            return;
        }
    }
}

/// Reads up to and including the blank line; `None` when the client closed before a request.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = reader
            .by_ref()
            .take((MAX_HEAD + 2) as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(None);
        }
        if line == b"\r\n" || line == b"\n" {
            if head.is_empty() {
                // A stray blank line between requests, which RFC 9112 says to ignore.
                continue;
            }
            return Ok(Some(head));
        }
        let complete = line.ends_with(b"\n");
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            // parse_head rejects it by its length, and the answer says so.
            return Ok(Some(head));
        }
        if !complete {
            // The client closed in the middle of a line.
            return Ok(None);
        }
    }
}

fn write_response(
    writer: &mut impl Write,
    response: &Response,
    close: bool,
) -> std::io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        if close { "close" } else { "keep-alive" }
    )
    .into_bytes();
    out.extend_from_slice(&response.body);
    writer.write_all(&out)?;
    writer.flush()
}
