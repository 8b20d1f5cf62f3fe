//! The lab's control port: how `relaywatch-lab drill`, a separate process, asks the lab to
//! stop or start one of its children.
//!
//! Plain HTTP/1.1 on 127.0.0.1, one request per connection, no body: `POST /<action>/<pod>`
//! with the header `X-Lab-Token: <token>` (the token is in `lab.json`, readable by its owner
//! only), answered `200` with a line of text or `4xx`/`5xx` with the error. A request with an
//! `Origin` header is refused: a web page in the user's browser must not stop the lab's tors. Hand-written on std
//! because it is ~100 lines and must never share a runtime with what it controls; requests
//! are served one at a time, which is what the lab's single lock would do anyway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What a drill may ask of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    StopRelay,
    StartRelay,
    StopExporter,
    StartExporter,
    StopTor,
    StartTor,
    /// Re-applies the lab's peering of one relay (both directions): undoes removed peers.
    Repeer,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::StopRelay,
        Action::StartRelay,
        Action::StopExporter,
        Action::StartExporter,
        Action::StopTor,
        Action::StartTor,
        Action::Repeer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::StopRelay => "stop-relay",
            Action::StartRelay => "start-relay",
            Action::StopExporter => "stop-exporter",
            Action::StartExporter => "start-exporter",
            Action::StopTor => "stop-tor",
            Action::StartTor => "start-tor",
            Action::Repeer => "repeer",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

/// Parses a request line `POST /<action>/<pod> HTTP/1.1` into the action and the pod.
pub fn parse_request_line(line: &str) -> Result<(Action, String)> {
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        bail!("not an HTTP request line");
    };
    if method != "POST" {
        bail!("method {method} not allowed; use POST /<action>/<pod>");
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let action = parts.next().unwrap_or_default();
    let pod = parts.next().unwrap_or_default();
    let Some(action) = Action::parse(action) else {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        bail!("unknown action {action:?}; known: {known:?}");
    };
    if pod.is_empty()
        || pod.len() > 64
        || !pod
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("POST /{}/<pod> needs a pod name", action.as_str());
    }
    Ok((action, pod.to_string()))
}

/// The header that carries the lab's token.
pub const TOKEN_HEADER: &str = "x-lab-token";

/// A running control server; stops accepting when dropped, and waits for its thread, which
/// may own the last handle on the lab (so the lab is stopped in order, before the process ends).
pub struct ControlServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A fresh random token for a control server.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl ControlServer {
    /// Serves `handle(action, pod)` on `addr`, one request at a time, on its own thread.
    pub fn start<F>(addr: SocketAddr, token: String, handle: F) -> Result<ControlServer>
    where
        F: FnMut(Action, &str) -> Result<String> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("cannot bind the lab's control port {addr}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lab-control".into())
            .spawn(move || serve(listener, stopped, token, handle))?;
        Ok(ControlServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag, then wait for it.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve<F>(listener: TcpListener, stop: Arc<AtomicBool>, token: String, mut handle: F)
where
    F: FnMut(Action, &str) -> Result<String>,
{
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // A client that never finishes its request must not hold the lab's hands for ever.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let (status, body) = match read_request(&stream, &token) {
            Ok((action, pod)) => match handle(action, &pod) {
                Ok(text) => (200, text),
                Err(error) => (500, format!("{error:#}")),
            },
            Err(error) => (400, format!("{error:#}")),
        };
        let _ = respond(stream, status, &body);
    }
}

fn read_request(stream: &TcpStream, token: &str) -> Result<(Action, String)> {
    let mut reader = BufReader::new(stream.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut authorized = false;
    let mut from_a_page = false;
    // Every header is read before answering: closing with unread bytes would reset the
    // connection, and the client might never see why it was refused.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        from_a_page |= name == "origin";
        authorized |= name == TOKEN_HEADER && value.trim() == token;
    }
    let request = parse_request_line(&line)?;
    if from_a_page {
        bail!("requests from web pages (with an Origin header) are refused");
    }
    if !authorized {
        bail!("missing or wrong {TOKEN_HEADER} header (the token is in the lab's lab.json)");
    }
    Ok(request)
}

fn respond(mut stream: TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Asks the lab at `control` to do `action` to `pod`; the lab's answer, or its error.
pub fn request(control: SocketAddr, token: &str, action: Action, pod: &str) -> Result<String> {
    // Starting a relay re-peers it; starting a tor waits for its control port.
    let agent = crate::rpc::agent(Duration::from_secs(120), false);
    let url = format!("http://{control}/{}/{pod}", action.as_str());
    let mut response = agent
        .post(&url)
        .header(TOKEN_HEADER, token)
        .send_empty()
        .with_context(|| {
            format!("the lab's control port {control} does not answer; is the lab still running?")
        })?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        bail!("the lab refused {} {pod}: {body}", action.as_str());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_and_refuses_the_rest() {
        assert_eq!(
            parse_request_line("POST /stop-relay/gethrelay-clearnet-0 HTTP/1.1\r\n").unwrap(),
            (Action::StopRelay, "gethrelay-clearnet-0".to_string())
        );
        for (line, want) in [
            ("GET /stop-relay/x HTTP/1.1", "method GET"),
            ("POST /explode/x HTTP/1.1", "unknown action"),
            ("POST /stop-relay/ HTTP/1.1", "needs a pod"),
            ("POST /stop-relay/../../etc HTTP/1.1", "needs a pod"),
            ("", "not an HTTP request line"),
        ] {
            let error = parse_request_line(line).unwrap_err().to_string();
            assert!(error.contains(want), "{line:?}: {error}");
        }
    }

    #[test]
    fn serves_requests_and_reports_errors() {
        let token = new_token();
        let server = ControlServer::start(
            "127.0.0.1:0".parse().unwrap(),
            token.clone(),
            |action, pod| {
                if pod == "broken" {
                    bail!("cannot {} {pod}", action.as_str());
                }
                Ok(format!("{} {pod}: done", action.as_str()))
            },
        )
        .unwrap();
        assert_eq!(
            request(
                server.addr,
                &token,
                Action::StopTor,
                "gethrelay-prefer-tor-0"
            )
            .unwrap(),
            "stop-tor gethrelay-prefer-tor-0: done"
        );
        let error = request(server.addr, &token, Action::Repeer, "broken")
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot repeer broken"), "{error}");
        // A client that sends garbage gets a 400, and the server keeps serving.
        let mut raw = TcpStream::connect(server.addr).unwrap();
        raw.write_all(b"\x00\xffgarbage\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(request(server.addr, &token, Action::StartTor, "x").is_ok());
        // Without the token, or from a web page, nothing is done.
        let error = request(server.addr, "guess", Action::StopTor, "x").unwrap_err();
        assert!(
            format!("{error:#}").contains("wrong x-lab-token"),
            "{error:#}"
        );
        let mut page = TcpStream::connect(server.addr).unwrap();
        let request = format!(
            "POST /stop-tor/x HTTP/1.1\r\nOrigin: http://evil.example\r\n{TOKEN_HEADER}: {token}\r\n\r\n"
        );
        page.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = page.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("Origin"),
            "{answer}"
        );
    }
}
