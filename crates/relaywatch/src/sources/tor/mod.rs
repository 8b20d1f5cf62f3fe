//! The Tor source: the pod tor's control port. Sends only PROTOCOLINFO, AUTHCHALLENGE,
//! AUTHENTICATE, SETEVENTS and GETINFO; everything it hears goes through `torctl`.
//!
//! One thread owns the connection: it feeds events to the dial tracker as they arrive and
//! asks GETINFO for health every poll interval. When tor goes away it reconnects with
//! jittered backoff, re-subscribes and keeps the same tracker, so counters stay monotonic.
//!
//! `auth` chooses and runs the authentication (never plain COOKIE unless allowed), `secret`
//! reads the cookie and password files (bounded, non-blocking). Text tor sends reaches a
//! default-level log line only as a bounded, sanitized excerpt; the full text is `debug`.

mod auth;
mod secret;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torctl::{getinfo, parse_event, DialTracker, LineBuffer, Message};

use super::backoff;
use crate::log::excerpt;

/// Events the tracker needs; unknown ones would be rejected by old tors, so no more.
pub const EVENTS: &str = "SETEVENTS STREAM CIRC HS_DESC ORCONN NETWORK_LIVENESS STATUS_CLIENT";
/// Every read, write and connect on the control port gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach and authenticate to tor.
#[derive(Debug, Clone)]
pub struct TorControlConfig {
    pub address: SocketAddr,
    /// Cookie file; default: the path PROTOCOLINFO names.
    pub cookie_file: Option<PathBuf>,
    /// File holding the control password (HASHEDPASSWORD); never a flag value, which `ps` shows.
    pub password_file: Option<PathBuf>,
    /// Allow plain COOKIE (the cookie sent in clear) when tor offers no SAFECOOKIE; only the
    /// `cookie_file` is ever sent that way. Dangerous: see `auth`.
    pub allow_plain_cookie: bool,
    pub poll_interval: Duration,
}

/// What the exporter reads from this source.
#[derive(Debug)]
pub struct TorState {
    pub tracker: DialTracker,
    pub connected: bool,
    /// Malformed or oversized control lines over all connections.
    pub unparsed_lines: u64,
}

impl Default for TorState {
    fn default() -> Self {
        TorState {
            tracker: DialTracker::new(),
            connected: false,
            unparsed_lines: 0,
        }
    }
}

/// Called after every connection attempt and every health poll: (ok, duration).
pub type Record = dyn Fn(bool, Duration) + Send + Sync;

struct Connection<'a> {
    stream: TcpStream,
    lines: LineBuffer,
    state: &'a Mutex<TorState>,
    counted_unparsed: u64,
}

impl Connection<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, TorState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next complete reply, feeding every event on the way to the tracker; `None` on a
    /// read timeout or once `deadline` has passed, so a stream of events cannot starve the
    /// health polls.
    fn next_message(&mut self, deadline: Instant) -> std::io::Result<Option<Message>> {
        loop {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if let Some(message) = self.lines.next_message() {
                self.account_unparsed();
                if message.is_event() {
                    let event = parse_event(&message);
                    if let Some(event) = event {
                        self.lock().tracker.observe(&event, Instant::now());
                    }
                    continue;
                }
                return Ok(Some(message));
            }
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "tor closed the control connection",
                    ))
                }
                Ok(n) => self.lines.push(&buf[..n]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Ok(None)
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn account_unparsed(&mut self) {
        let stats = self.lines.stats();
        let total = stats.malformed_lines + stats.oversized_lines;
        if total > self.counted_unparsed {
            let delta = total - self.counted_unparsed;
            self.counted_unparsed = total;
            self.lock().unparsed_lines += delta;
        }
    }

    /// Sends one command and returns its reply; events arriving meanwhile are processed.
    fn command(&mut self, line: &str) -> std::io::Result<Message> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(message) = self.next_message(deadline)? {
                return Ok(message);
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    "tor did not answer within 5 s",
                ));
            }
        }
    }
}

/// Why a session ended. `Display` is the default-level log line: our own words plus at most
/// an [`excerpt`] of what tor sent; [`SessionError::foreign`] is the full text, for `debug`.
#[derive(Debug)]
enum SessionError {
    Connect(std::io::Error),
    /// Authentication or configuration; our own words only.
    Auth(String),
    /// Tor refused a command: our words, and tor's text (anything, up to a 64 KiB line).
    Refused {
        what: String,
        foreign: String,
    },
    Io(std::io::Error),
}

impl SessionError {
    fn refused(what: String, foreign: impl Into<String>) -> Self {
        SessionError::Refused {
            what,
            foreign: foreign.into(),
        }
    }

    /// Text that came from the control port, unfiltered.
    fn foreign(&self) -> Option<&str> {
        match self {
            SessionError::Refused { foreign, .. } => Some(foreign),
            _ => None,
        }
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Connect(error) => {
                write!(f, "cannot connect to the control port: {error}")
            }
            SessionError::Auth(text) => write!(f, "{text}"),
            SessionError::Refused { what, foreign } => match excerpt(foreign) {
                text if text.is_empty() => write!(f, "{what}"),
                text => write!(f, "{what} ({text})"),
            },
            SessionError::Io(error) => write!(f, "control connection lost: {error}"),
        }
    }
}

impl From<std::io::Error> for SessionError {
    fn from(error: std::io::Error) -> Self {
        SessionError::Io(error)
    }
}

fn poll_health(connection: &mut Connection) -> Result<(), SessionError> {
    let reply = connection.command(&format!("GETINFO {}", getinfo::HEALTH_KEYS.join(" ")))?;
    if !reply.is_ok() {
        return Err(SessionError::refused(
            format!("GETINFO failed: tor answered {}", reply.status),
            reply.first_text(),
        ));
    }
    let value = |key: &str| getinfo::getinfo_value(&reply, key);
    let bootstrap =
        value("status/bootstrap-phase").and_then(|phase| getinfo::bootstrap_progress(&phase));
    let live = value("network-liveness").and_then(|text| getinfo::parse_liveness(&text));
    let circuit = value("status/circuit-established")
        .and_then(|text| getinfo::parse_circuit_established(&text));
    connection
        .lock()
        .tracker
        .set_health(bootstrap, live, circuit);
    Ok(())
}

/// One connection's life; `step_started` tells the caller when the step that failed began.
fn session(
    config: &TorControlConfig,
    state: &Mutex<TorState>,
    record: &Record,
    step_started: &mut Instant,
) -> Result<(), SessionError> {
    let started = Instant::now();
    *step_started = started;
    let stream =
        TcpStream::connect_timeout(&config.address, IO_TIMEOUT).map_err(SessionError::Connect)?;
    stream.set_read_timeout(Some(Duration::from_millis(250)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut connection = Connection {
        stream,
        lines: LineBuffer::new(),
        state,
        counted_unparsed: 0,
    };
    auth::authenticate(&mut connection, config)?;
    let reply = connection.command(EVENTS)?;
    if !reply.is_ok() {
        return Err(SessionError::refused(
            format!("{EVENTS} refused: tor answered {}", reply.status),
            reply.first_text(),
        ));
    }
    {
        let mut state = connection.lock();
        state.tracker.connection_reset();
        state.connected = true;
    }
    poll_health(&mut connection)?;
    record(true, started.elapsed());
    let mut next_poll = Instant::now() + config.poll_interval;
    loop {
        // Reading with a short timeout keeps events flowing between health polls.
        if let Some(reply) = connection.next_message(next_poll)? {
            // Nothing is pending: a reply here is unsolicited; note it and go on.
            tracing::debug!("unexpected control reply {}", reply.status);
        }
        if Instant::now() >= next_poll {
            *step_started = Instant::now();
            poll_health(&mut connection)?;
            record(true, step_started.elapsed());
            next_poll = Instant::now() + config.poll_interval;
        }
    }
}

/// First reconnect delay, and the longest one.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs the source forever on the calling thread.
pub fn run(config: TorControlConfig, state: Arc<Mutex<TorState>>, record: Arc<Record>) {
    let mut delay = Duration::ZERO;
    let mut last_error = String::new();
    loop {
        let started = Instant::now();
        let mut step_started = started;
        let error = match session(&config, &state, record.as_ref(), &mut step_started) {
            Ok(()) => continue,
            Err(error) => error,
        };
        {
            let mut state = state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Health is unknown without a connection; the gauges disappear instead of going stale.
            state.connected = false;
        }
        // The failed step's own duration, not the whole session's.
        record(false, step_started.elapsed());
        // A session that ran a while was healthy: start the backoff over.
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::ZERO;
            last_error.clear();
        }
        let text = format!("tor source: {error}");
        if text != last_error {
            tracing::warn!("{}", &text);
            last_error = text;
        }
        if let Some(foreign) = error.foreign() {
            // The whole reply, escaped ({:?}) so NUL and CR cannot forge log lines.
            tracing::debug!("tor source: tor's full answer: {foreign:?}");
        }
        // Jittered, so retries cannot phase-lock with a tor that flaps periodically.
        delay = backoff::next_delay(delay, BACKOFF_BASE, BACKOFF_MAX, backoff::random_unit());
        std::thread::sleep(delay);
    }
}
