//! A small blocking control-port client for the harness and tests (not the exporter's parser).
//!
//! Async `650` events may arrive between a command and its reply; they are queued for
//! `next_event`, never taken for the reply.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long a command may wait for its reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One complete reply or event: its status code and the text of every line.
///
/// Mid lines (`250-`), the end line (`250 `), `250+` lines and the data lines after them
/// (dot-unstuffed, without the closing ".") all appear in order in `lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub lines: Vec<String>,
}

/// Assembles reply lines into replies; keeps its state across read timeouts.
#[derive(Debug, Default)]
pub(crate) struct ReplyParser {
    status: Option<u16>,
    lines: Vec<String>,
    in_data: bool,
}

impl ReplyParser {
    /// Feeds one line (without CRLF); returns the reply it completes, if any.
    pub fn push_line(&mut self, line: &str) -> Result<Option<Reply>> {
        if self.in_data {
            if line == "." {
                self.in_data = false;
            } else {
                let unstuffed = line.strip_prefix('.').unwrap_or(line);
                self.lines.push(unstuffed.to_string());
            }
            return Ok(None);
        }
        let (code, separator, text) = match (line.get(..3), line.get(3..4), line.get(4..)) {
            (Some(code), Some(separator), Some(text)) => (code, separator, text),
            (Some(code), None, None) => (code, " ", ""),
            _ => bail!("malformed control-port line {line:?}"),
        };
        let status: u16 = code
            .parse()
            .map_err(|_| anyhow!("malformed control-port status in {line:?}"))?;
        if let Some(open) = self.status {
            if open != status {
                bail!("control-port status changed from {open} to {status} within one reply: {line:?}");
            }
        }
        self.status = Some(status);
        self.lines.push(text.to_string());
        match separator {
            "-" => Ok(None),
            "+" => {
                self.in_data = true;
                Ok(None)
            }
            " " => {
                self.status = None;
                Ok(Some(Reply {
                    status,
                    lines: std::mem::take(&mut self.lines),
                }))
            }
            _ => bail!("malformed control-port separator in {line:?}"),
        }
    }
}

/// An authenticated control connection.
pub struct ControlConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Bytes of a line cut by a read timeout; completed by the next read.
    pending: Vec<u8>,
    parser: ReplyParser,
    events: VecDeque<Reply>,
}

impl ControlConnection {
    /// Connects and authenticates with the cookie tor wrote (`CookieAuthentication 1`).
    pub fn connect(addr: SocketAddr, cookie_path: &Path, timeout: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("cannot connect to the control port {addr}"))?;
        let cookie = std::fs::read(cookie_path)
            .with_context(|| format!("cannot read the control cookie {}", cookie_path.display()))?;
        let writer = stream.try_clone()?;
        let mut connection = ControlConnection {
            reader: BufReader::new(stream),
            writer,
            pending: Vec::new(),
            parser: ReplyParser::default(),
            events: VecDeque::new(),
        };
        connection
            .command(&format!("AUTHENTICATE {}", hex::encode_upper(cookie)))
            .with_context(|| format!("cookie authentication on {addr} failed"))?;
        Ok(connection)
    }

    /// Sends one command line and returns the lines of its reply; a non-2xx reply is an error.
    pub fn command(&mut self, line: &str) -> Result<Vec<String>> {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .context("cannot write to the control port")?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let shown = line.split(' ').next().unwrap_or(line);
        loop {
            let Some(reply) = self.read_reply(deadline)? else {
                bail!("no reply to {shown} within {COMMAND_TIMEOUT:?}");
            };
            if reply.status == 650 {
                self.events.push_back(reply);
                continue;
            }
            if !(200..300).contains(&reply.status) {
                bail!(
                    "{shown} failed: {} {}",
                    reply.status,
                    reply.lines.join(" | ")
                );
            }
            return Ok(reply.lines);
        }
    }

    /// `GETINFO key`: the value after `key=`; data values are joined with newlines.
    pub fn getinfo(&mut self, key: &str) -> Result<String> {
        let lines = self.command(&format!("GETINFO {key}"))?;
        getinfo_value(&lines, key).ok_or_else(|| anyhow!("GETINFO {key}: no value in {lines:?}"))
    }

    /// The next async event (text after `650 `, one entry per line), or None after `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Vec<String>>> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event.lines));
        }
        match self.read_reply(Instant::now() + timeout)? {
            None => Ok(None),
            Some(reply) if reply.status == 650 => Ok(Some(reply.lines)),
            Some(reply) => bail!("unexpected control-port reply without a command: {reply:?}"),
        }
    }

    /// Reads until a reply is complete; None when `deadline` passes first.
    fn read_reply(&mut self, deadline: Instant) -> Result<Option<Reply>> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))?;
            match self.reader.read_until(b'\n', &mut self.pending) {
                Ok(0) => bail!("the control port closed the connection"),
                Ok(_) if self.pending.ends_with(b"\n") => {
                    let bytes = std::mem::take(&mut self.pending);
                    let line = String::from_utf8_lossy(&bytes);
                    let line = line.trim_end_matches(['\r', '\n']);
                    if let Some(reply) = self.parser.push_line(line)? {
                        return Ok(Some(reply));
                    }
                }
                Ok(_) => bail!("the control port closed the connection mid-line"),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error).context("cannot read from the control port"),
            }
        }
    }
}

/// Finds `key=value` in GETINFO reply lines; a `key=` data block gives the lines after it.
pub(crate) fn getinfo_value(lines: &[String], key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    let index = lines.iter().position(|line| line.starts_with(&prefix))?;
    let value = &lines[index][prefix.len()..];
    if !value.is_empty() {
        return Some(value.to_string());
    }
    // Data block: the lines up to the closing "OK" belong to the value.
    let end = lines.len().saturating_sub(1).max(index + 1);
    Some(lines[index + 1..end].join("\n"))
}

/// The `PROGRESS=` percentage of a `status/bootstrap-phase` value.
pub(crate) fn bootstrap_progress(phase: &str) -> Option<u8> {
    phase
        .split_whitespace()
        .find_map(|word| word.strip_prefix("PROGRESS="))
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Vec<Reply> {
        let mut parser = ReplyParser::default();
        lines
            .iter()
            .filter_map(|line| parser.push_line(line).unwrap())
            .collect()
    }

    fn reply(status: u16, lines: &[&str]) -> Reply {
        Reply {
            status,
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn single_and_mid_lines() {
        assert_eq!(parse(&["250 OK"]), [reply(250, &["OK"])]);
        assert_eq!(
            parse(&[
                "250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"",
                "250 OK"
            ]),
            [reply(
                250,
                &[
                    "status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"",
                    "OK"
                ]
            )]
        );
    }

    #[test]
    fn data_lines_are_unstuffed() {
        let replies = parse(&["250+config-text=", "SocksPort 1", "..dot", ".", "250 OK"]);
        assert_eq!(
            replies,
            [reply(250, &["config-text=", "SocksPort 1", ".dot", "OK"])]
        );
        assert_eq!(
            getinfo_value(&replies[0].lines, "config-text").as_deref(),
            Some("SocksPort 1\n.dot")
        );
    }

    #[test]
    fn events_interleave_between_replies() {
        let replies = parse(&[
            "650 HS_DESC UPLOADED abc UNKNOWN $FP~auth00 descid",
            "250-version=0.4.9.11",
            "250 OK",
            "650-SOMETHING a",
            "650 b",
        ]);
        assert_eq!(
            replies,
            [
                reply(650, &["HS_DESC UPLOADED abc UNKNOWN $FP~auth00 descid"]),
                reply(250, &["version=0.4.9.11", "OK"]),
                reply(650, &["SOMETHING a", "b"]),
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&["515 Authentication failed: Wrong length on authentication cookie."]),
            [reply(
                515,
                &["Authentication failed: Wrong length on authentication cookie."]
            )]
        );
        let mut parser = ReplyParser::default();
        assert!(parser.push_line("xx").is_err());
        assert!(parser.push_line("25a OK").is_err());
    }

    #[test]
    fn getinfo_values() {
        let lines = vec![
            "net/listeners/socks=\"127.0.0.1:1\"".to_string(),
            "OK".to_string(),
        ];
        assert_eq!(
            getinfo_value(&lines, "net/listeners/socks").as_deref(),
            Some("\"127.0.0.1:1\"")
        );
        assert_eq!(getinfo_value(&lines, "version"), None);
    }

    #[test]
    fn progress() {
        assert_eq!(
            bootstrap_progress("NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\""),
            Some(100)
        );
        assert_eq!(
            bootstrap_progress(
                "NOTICE BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY=\"Handshaking\""
            ),
            Some(14)
        );
        assert_eq!(bootstrap_progress("garbage"), None);
    }
}
