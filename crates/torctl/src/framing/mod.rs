//! Framing: arbitrary byte chunks from the control port in, complete replies and events out.
//!
//! Grammar (control-spec §2.3): every line is `StatusCode (SP / "-" / "+") text CRLF`; `-`
//! continues a reply, `+` opens a data block that ends with a line holding a single `.`
//! (with leading dots doubled inside, §2.4 CmdData), and SP ends the reply. Events (`650`)
//! use the same shapes and never interleave with the lines of another reply (§4.1).
//!
//! Nothing here fails: a line over the length limit is skipped (and the message it belonged
//! to dropped, since a message missing a line could be misread), a line that is not a reply
//! line is skipped, and both are counted in [`FramingStats`]. Memory stays bounded by
//! `max_line` for the partial line plus `max_message` for the message being assembled.

use std::collections::VecDeque;

#[cfg(test)]
mod tests;

/// Default longest line kept: tor's event lines are a few hundred bytes.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default largest message kept (all lines and data of one reply or event).
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

/// One line of a reply, with the data block it opened if it was a `NNN+` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The text after the status code and separator.
    pub text: String,
    /// For a `NNN+` line: the data lines, dot-unstuffed, without the closing `.`.
    pub data: Option<Vec<String>>,
}

/// One complete reply (2xx-5xx) or asynchronous event (650).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub status: u16,
    /// At least one line; the last one was the `NNN ` end line.
    pub lines: Vec<ReplyLine>,
}

impl Message {
    /// An asynchronous event (status 650)?
    pub fn is_event(&self) -> bool {
        self.status == 650
    }

    /// A positive completion reply (2xx)?
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The text of the first line (the event keyword and arguments, for an event).
    pub fn first_text(&self) -> &str {
        self.lines.first().map_or("", |line| line.text.as_str())
    }
}

/// What the framing skipped; every counter only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramingStats {
    /// Complete lines seen (oversized ones included).
    pub lines: u64,
    /// Messages handed out.
    pub messages: u64,
    /// Lines longer than the limit, skipped.
    pub oversized_lines: u64,
    /// Lines that are no reply line (no 3-digit code, bad separator, status change inside a
    /// message), skipped.
    pub malformed_lines: u64,
    /// Messages dropped because a line of theirs was skipped or they grew over the limit.
    pub dropped_messages: u64,
}

/// The message being assembled.
#[derive(Debug, Default)]
struct Partial {
    status: u16,
    lines: Vec<ReplyLine>,
    bytes: usize,
    /// Inside a `NNN+` data block.
    in_data: bool,
    /// A line of this message was lost: drop it when it ends.
    poisoned: bool,
}

impl Partial {
    /// Frees what was kept: a message missing a line is dropped when it ends.
    fn poison(&mut self) {
        self.poisoned = true;
        self.lines = Vec::new();
        self.bytes = 0;
    }

    /// Accounts for `len` more bytes; false when the line must not be kept.
    fn keep(&mut self, len: usize, max_message: usize) -> bool {
        if self.poisoned {
            return false;
        }
        self.bytes += len + 1;
        if self.bytes > max_message {
            self.poison();
            return false;
        }
        true
    }
}

/// Turns byte chunks into [`Message`]s. Feed with [`push`](Self::push), drain with
/// [`next_message`](Self::next_message) after each push (queued messages are the only
/// memory that grows with the chunk size the caller chooses).
#[derive(Debug)]
pub struct LineBuffer {
    max_line: usize,
    max_message: usize,
    /// Bytes of the current, not yet terminated line (at most `max_line`).
    line: Vec<u8>,
    /// The current line exceeded `max_line`: skip to the next LF. Its first 4 bytes are kept
    /// in `line` so the line's separator still steers the data-block state.
    skipping: bool,
    partial: Option<Partial>,
    ready: VecDeque<Message>,
    stats: FramingStats,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_LINE, DEFAULT_MAX_MESSAGE)
    }

    /// `max_line`: longest line kept, in bytes without CRLF (at least 8);
    /// `max_message`: largest message kept.
    pub fn with_limits(max_line: usize, max_message: usize) -> Self {
        LineBuffer {
            max_line: max_line.max(8),
            max_message: max_message.max(max_line.max(8)),
            line: Vec::new(),
            skipping: false,
            partial: None,
            ready: VecDeque::new(),
            stats: FramingStats::default(),
        }
    }

    /// Feeds bytes as they came off the socket, split anywhere.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            let (chunk, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if newline.is_some() && self.line.is_empty() && !self.skipping {
                // The whole line is in this chunk (the usual case): frame it in place,
                // without copying it into `line` first.
                if chunk.len() > self.max_line + 1 {
                    self.finish_line(&chunk[..4], true);
                } else {
                    self.finish_line(chunk, false);
                }
                continue;
            }
            if self.skipping {
                // Keep nothing more of an oversized line.
            } else if self.line.len() + chunk.len() > self.max_line + 1 {
                // +1: a CR before the LF does not count against the limit. Keep exactly the
                // first 4 bytes however the line was chunked (the fuzz harness found that
                // keeping more when the line arrived in pieces changed how it was framed).
                let keep = 4usize.saturating_sub(self.line.len()).min(chunk.len());
                self.line.extend_from_slice(&chunk[..keep]);
                self.line.truncate(4);
                self.skipping = true;
            } else {
                self.line.extend_from_slice(chunk);
            }
            if newline.is_some() {
                let line = std::mem::take(&mut self.line);
                let oversized = std::mem::replace(&mut self.skipping, false);
                self.finish_line(&line, oversized);
                self.line = line; // keep the allocation
                self.line.clear();
            }
        }
    }

    /// The next complete message, oldest first.
    pub fn next_message(&mut self) -> Option<Message> {
        self.ready.pop_front()
    }

    pub fn stats(&self) -> FramingStats {
        self.stats
    }

    /// Bytes held for the unfinished line and message (not the queued messages): at most
    /// about `max_line + max_message`.
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.partial.as_ref().map_or(0, |p| p.bytes)
    }

    /// Forgets a partial line and message, e.g. after the connection dropped; counters stay.
    pub fn reset(&mut self) {
        self.line.clear();
        self.skipping = false;
        if self.partial.take().is_some() {
            self.stats.dropped_messages += 1;
        }
    }

    /// One complete line without its LF; for an oversized line, its first 4 bytes.
    fn finish_line(&mut self, mut line: &[u8], oversized: bool) {
        self.stats.lines += 1;
        if oversized {
            self.stats.oversized_lines += 1;
        } else if let Some(stripped) = line.strip_suffix(b"\r") {
            // An oversized line's kept prefix does not end the line: a CR in it is not the CR
            // of CRLF (stripping it made "650\r…" a bare "650" end line).
            line = stripped;
        }
        self.handle_line(line, oversized);
    }

    fn handle_line(&mut self, line: &[u8], oversized: bool) {
        // Inside a data block every line is data until a lone ".".
        if let Some(partial) = self.partial.as_mut().filter(|p| p.in_data) {
            if oversized {
                partial.poison();
                return;
            }
            if line == b"." {
                partial.in_data = false;
                return;
            }
            let unstuffed = line.strip_prefix(b".").unwrap_or(line);
            if partial.keep(unstuffed.len(), self.max_message) {
                let text = utf8_lossy(unstuffed);
                if let Some(data) = partial.lines.last_mut().and_then(|l| l.data.as_mut()) {
                    data.push(text);
                }
            }
            return;
        }
        let Some((status, separator)) = reply_prefix(line) else {
            if oversized {
                // Not even a status code survived: count it once, as oversized.
                return;
            }
            self.stats.malformed_lines += 1;
            return;
        };
        if let Some(partial) = &self.partial {
            if partial.status != status {
                // §2.3: lines of one reply share the status code. Whatever this line
                // interrupted is incomplete; drop it and start over with this line.
                self.stats.malformed_lines += 1;
                self.stats.dropped_messages += 1;
                self.partial = None;
            }
        }
        let partial = self.partial.get_or_insert_with(|| Partial {
            status,
            ..Partial::default()
        });
        let text = line.get(4..).unwrap_or_default();
        if oversized {
            partial.poison();
        }
        let data = (separator == b'+').then(Vec::new);
        partial.in_data = separator == b'+';
        if partial.keep(text.len(), self.max_message) {
            partial.lines.push(ReplyLine {
                text: utf8_lossy(text),
                data,
            });
        }
        if separator == b' ' {
            let done = self.partial.take().expect("just inserted");
            if done.poisoned {
                self.stats.dropped_messages += 1;
            } else {
                self.stats.messages += 1;
                self.ready.push_back(Message {
                    status: done.status,
                    lines: done.lines,
                });
            }
        }
    }
}

/// Bytes as a `String`, invalid UTF-8 replaced (U+FFFD). Checking with `from_utf8` first is
/// several times faster than `from_utf8_lossy` on the valid text tor sends.
fn utf8_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `NNN` plus separator of a reply line; a bare `NNN` counts as an end line (lenient).
fn reply_prefix(line: &[u8]) -> Option<(u16, u8)> {
    let code = line.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    match line.get(3) {
        None => Some((status, b' ')),
        Some(&separator @ (b' ' | b'-' | b'+')) => Some((status, separator)),
        Some(_) => None,
    }
}

/// One message from literal bytes, for unit tests of the modules that read messages.
#[cfg(test)]
pub(crate) fn test_message(bytes: &[u8]) -> Message {
    let mut buffer = LineBuffer::new();
    buffer.push(bytes);
    buffer.next_message().expect("one message")
}
