//! The SMTP relay stand-in: a minimal SMTP server that accepts every message and records it.
//!
//! AUTH is advertised (PLAIN and LOGIN) and any credentials are accepted: Alertmanager only
//! authenticates when the server advertises AUTH, and then it reads `smtp_auth_password_file`,
//! so advertising it makes the lab exercise the secret file as the cluster does. Go's SMTP
//! client sends PLAIN credentials without TLS only to localhost, which the sink is. STARTTLS is
//! not advertised; the lab config sets `smtp_require_tls: false`.
//!
//! The protocol is a pure state machine ([`Session`]) fed one line at a time; the IO loop
//! bounds line length, message size and idle time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::journal::Journal;
use super::listener::Listener;
use super::mail::parse_mail;
use super::{find_pods, label_values, parse_status, unix_ms, Notification, SinkKind};

/// Largest message accepted; a bigger one is read to its end and refused with 552.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Longest line accepted (RFC 5321 allows 1000 with CRLF; this is lenient).
pub const MAX_LINE: usize = 64 * 1024;
/// Commands that fail in a row before the sink hangs up.
const MAX_ERRORS: u32 = 20;
/// An idle client is dropped after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const GREETING: &str = "220 lab-smtp-sink ESMTP ready\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Command,
    Data,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword,
}

/// One SMTP conversation, without IO.
#[derive(Debug)]
pub struct Session {
    state: State,
    has_sender: bool,
    recipients: usize,
    data: Vec<u8>,
    too_big: bool,
    errors: u32,
}

/// What to do after one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes to send back (CRLF included); none while DATA is being read.
    pub reply: Option<String>,
    /// A whole message, dot-unstuffed, when DATA ended.
    pub message: Option<Vec<u8>>,
    /// Hang up after the reply.
    pub close: bool,
    /// The client just authenticated (any credentials are accepted).
    pub authenticated: bool,
}

impl Step {
    fn reply(text: &str) -> Step {
        Step {
            reply: Some(format!("{text}\r\n")),
            ..Step::default()
        }
    }

    fn authenticated() -> Step {
        Step {
            authenticated: true,
            ..Step::reply("235 2.7.0 Authentication successful")
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            state: State::Command,
            has_sender: false,
            recipients: 0,
            data: Vec::new(),
            too_big: false,
            errors: 0,
        }
    }

    /// What the server says first.
    pub fn greeting() -> &'static str {
        GREETING
    }

    /// Feeds one line, without its line end.
    pub fn line(&mut self, line: &[u8]) -> Step {
        match self.state {
            State::Data => self.data_line(line),
            State::AuthPlain | State::AuthLoginUser => {
                self.state = if self.state == State::AuthLoginUser {
                    State::AuthLoginPassword
                } else {
                    State::Command
                };
                if self.state == State::AuthLoginPassword {
                    // "Password:" in base64.
                    Step::reply("334 UGFzc3dvcmQ6")
                } else {
                    Step::authenticated()
                }
            }
            State::AuthLoginPassword => {
                self.state = State::Command;
                Step::authenticated()
            }
            State::Command => {
                let step = self.command(&String::from_utf8_lossy(line));
                let failed = step
                    .reply
                    .as_deref()
                    .is_some_and(|reply| reply.starts_with('5'));
                self.errors = if failed { self.errors + 1 } else { 0 };
                if self.errors >= MAX_ERRORS {
                    return Step {
                        reply: Some("421 4.7.0 Too many errors, closing\r\n".into()),
                        close: true,
                        ..Step::default()
                    };
                }
                step
            }
        }
    }

    fn command(&mut self, line: &str) -> Step {
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb, argument.trim()),
            None => (line.trim(), ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                self.reset();
                Step {
                    reply: Some(format!(
                        "250-lab-smtp-sink\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE {MAX_MESSAGE}\r\n250 8BITMIME\r\n"
                    )),
                    ..Step::default()
                }
            }
            "HELO" => {
                self.reset();
                Step::reply("250 lab-smtp-sink")
            }
            "AUTH" => {
                let mut parts = argument.split_whitespace();
                match (
                    parts.next().map(str::to_ascii_uppercase).as_deref(),
                    parts.next(),
                ) {
                    (Some("PLAIN"), Some(_)) => Step::authenticated(),
                    (Some("PLAIN"), None) => {
                        self.state = State::AuthPlain;
                        Step::reply("334 ")
                    }
                    (Some("LOGIN"), Some(_)) => {
                        self.state = State::AuthLoginPassword;
                        Step::reply("334 UGFzc3dvcmQ6")
                    }
                    (Some("LOGIN"), None) => {
                        self.state = State::AuthLoginUser;
                        // "Username:" in base64.
                        Step::reply("334 VXNlcm5hbWU6")
                    }
                    _ => Step::reply("504 5.5.4 Unrecognized authentication type"),
                }
            }
            "MAIL" if argument.to_ascii_uppercase().starts_with("FROM:") => {
                self.reset();
                self.has_sender = true;
                Step::reply("250 2.1.0 OK")
            }
            "RCPT" if argument.to_ascii_uppercase().starts_with("TO:") => {
                if !self.has_sender {
                    return Step::reply("503 5.5.1 MAIL FROM first");
                }
                self.recipients += 1;
                Step::reply("250 2.1.5 OK")
            }
            "MAIL" | "RCPT" => {
                Step::reply("501 5.5.4 Syntax: MAIL FROM:<address> / RCPT TO:<address>")
            }
            "DATA" => {
                if !self.has_sender || self.recipients == 0 {
                    return Step::reply("503 5.5.1 MAIL FROM and RCPT TO first");
                }
                self.state = State::Data;
                Step::reply("354 End data with <CR><LF>.<CR><LF>")
            }
            "RSET" => {
                self.reset();
                Step::reply("250 2.0.0 OK")
            }
            "NOOP" => Step::reply("250 2.0.0 OK"),
            "VRFY" => Step::reply("252 2.5.2 Cannot verify, will accept"),
            "STARTTLS" => Step::reply("454 4.7.0 TLS not available"),
            "QUIT" => Step {
                reply: Some("221 2.0.0 Bye\r\n".into()),
                close: true,
                ..Step::default()
            },
            _ => Step::reply("502 5.5.2 Command not recognized"),
        }
    }

    fn data_line(&mut self, line: &[u8]) -> Step {
        if line == b"." {
            self.state = State::Command;
            let message = std::mem::take(&mut self.data);
            let too_big = self.too_big;
            self.reset();
            if too_big {
                return Step::reply("552 5.3.4 Message too big");
            }
            return Step {
                reply: Some("250 2.0.0 OK: queued\r\n".into()),
                message: Some(message),
                ..Step::default()
            };
        }
        // Dot-stuffing: a line that starts with "." was sent with one more.
        let line = line.strip_prefix(b".").unwrap_or(line);
        if self.data.len() + line.len() + 2 > MAX_MESSAGE {
            self.too_big = true;
        } else {
            self.data.extend_from_slice(line);
            self.data.extend_from_slice(b"\r\n");
        }
        Step::default()
    }

    fn reset(&mut self) {
        self.has_sender = false;
        self.recipients = 0;
        self.data.clear();
        self.too_big = false;
    }
}

/// Reads a mail into a notification: the subject's `[FIRING:n]` or `[RESOLVED]` gives the
/// status, the body's `alertname = …` and `pod = …` labels (and `Relay ns/pod`) the rest.
pub fn mail_notification(raw: &[u8], received_unix_ms: u64) -> Notification {
    let mail = parse_mail(raw);
    Notification {
        sink: SinkKind::Email,
        received_unix_ms,
        status: parse_status(&mail.subject),
        alertnames: label_values(&mail.text, "alertname"),
        pods: find_pods(&mail.text),
        title: mail.subject,
        text: mail.text,
    }
}

/// A running SMTP stand-in; stops when dropped.
pub struct SmtpSink {
    listener: Listener,
    journal: Arc<Journal>,
    authentications: Arc<AtomicUsize>,
}

impl SmtpSink {
    /// Serves on a free loopback port, recording to `<dir>/sinks/email.jsonl`.
    pub fn start(dir: &Path) -> Result<SmtpSink> {
        let journal = Arc::new(Journal::open(dir, "email")?);
        let authentications = Arc::new(AtomicUsize::new(0));
        let (recorder, counter) = (journal.clone(), authentications.clone());
        let listener = Listener::start(
            "smtp-sink",
            Arc::new(move |stream: TcpStream| serve(stream, &recorder, &counter)),
        )?;
        Ok(SmtpSink {
            listener,
            journal,
            authentications,
        })
    }

    /// The address to give Alertmanager as `smtp_smarthost`.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    pub fn count(&self) -> usize {
        self.journal.count()
    }

    /// How many times a client authenticated: Alertmanager does so only after reading
    /// `smtp_auth_password_file`, so this shows the lab's secret file was used.
    pub fn authentications(&self) -> usize {
        self.authentications.load(Ordering::SeqCst)
    }

    pub fn notifications(&self) -> Vec<Notification> {
        self.journal.notifications()
    }

    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// True while the accept loop runs.
    pub fn is_healthy(&self) -> bool {
        self.listener.is_healthy()
    }
}

fn serve(stream: TcpStream, journal: &Journal, authentications: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if writer.write_all(GREETING.as_bytes()).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut session = Session::new();
    loop {
        let mut line = Vec::new();
        match reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            // Longer than MAX_LINE, or the client closed mid-line.
            let _ = writer.write_all(b"500 5.5.6 Line too long\r\n");
            return;
        }
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let step = session.line(line);
        if step.authenticated {
            authentications.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(message) = step.message {
            journal.record(mail_notification(&message, unix_ms()));
        }
        if let Some(reply) = step.reply {
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
        if step.close {
            return;
        }
    }
}
