//! Logging: `tracing` events written to stderr by `tracing-subscriber`, as text or JSON lines.
//!
//! Privacy rule: no peer address, onion, enode or node ID at `info` or above, and no text
//! echoed from the relay or from tor except through [`excerpt`]; the full text is `debug`.
//!
//! Logging must never take a thread down: `eprintln!` panics when stderr is a closed pipe,
//! and so does tracing-subscriber's own error report unless `log_internal_errors(false)`.
//! [`Stderr`] swallows write errors (a log line is not worth a worker thread).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::cli::{LogFormat, LogLevel};

/// stderr that drops write errors (EPIPE, EBADF, ENOSPC) instead of reporting them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Report the bytes as written whatever happened: a closed stderr loses log lines, nothing else.
        let _ = io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

fn filter(level: LogLevel) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

/// Installs the process-wide subscriber. Later calls (tests) keep the first one.
pub fn init(level: LogLevel, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr)
        .with_max_level(filter(level))
        .with_target(false)
        .with_ansi(false)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// At most this many characters of foreign text (relay or tor) reach a default-level log line.
pub const EXCERPT_CHARS: usize = 80;

/// A bounded, printable excerpt of text that came from the relay or tor, for default-level logs:
/// control characters become `?`, long text is cut (`…`), and anything that looks like a
/// peer identifier (an address, an enode, an onion, a long hex ID) is replaced by `<redacted>`.
pub fn excerpt(text: &str) -> String {
    let mut out = Vec::new();
    let mut total = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        let word = if looks_identifying(word) {
            "<redacted>".to_string()
        } else {
            word.chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect()
        };
        total += word.chars().count() + 1;
        out.push(word);
        if total > EXCERPT_CHARS {
            break;
        }
    }
    let mut joined = out.join(" ");
    if joined.chars().count() > EXCERPT_CHARS {
        joined = joined.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    joined
}

/// Digits-and-dots (IPv4), colons with hex (IPv6, ports), `enode:`, `.onion`, `@`, or a long
/// run of hex digits (node IDs, keys): too close to a peer identifier to log by default.
fn looks_identifying(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    if lower.contains("enode") || lower.contains("onion") || lower.contains('@') || lower.contains("enr:") {
        return true;
    }
    let digits = word.chars().filter(char::is_ascii_digit).count();
    if digits >= 2 && word.chars().filter(|&c| c == '.').count() >= 2 {
        return true;
    }
    if word.chars().filter(|&c| c == ':').count() >= 2 || (word.contains(':') && digits >= 2) {
        return true;
    }
    let longest_hex = word
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    longest_hex >= 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_hide_identifiers_and_control_bytes() {
        let text = "removePeer failed for enode://aabbccdd@198.51.100.77:30303 at [2001:db8::1]:30303 \
                    node 0123456789abcdef0123 on abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz234567.onion\0\r\n";
        let line = excerpt(text);
        for secret in ["198.51.100.77", "2001:db8", "0123456789abcdef", ".onion", "aabbccdd"] {
            assert!(!line.contains(secret), "{secret} in {line:?}");
        }
        assert!(line.starts_with("removePeer failed for <redacted>"), "{line}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn excerpts_are_bounded() {
        let line = excerpt(&"word ".repeat(10_000));
        assert!(line.chars().count() <= EXCERPT_CHARS + 1, "{}", line.len());
        assert_eq!(excerpt(&"x".repeat(100_000)).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn closed_stderr_is_not_an_error() {
        assert_eq!(Stderr.write(b"line\n").unwrap(), 5);
        assert!(Stderr.flush().is_ok());
    }
}
