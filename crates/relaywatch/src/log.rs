//! Logging: `tracing` events written to stderr by `tracing-subscriber`, as text or JSON lines.
//!
//! Privacy rule: no peer address, onion, enode or node ID at `info` or above, and no text
//! echoed from the relay or from tor except through [`excerpt`]; the full text is `debug`.
//!
//! Logging must never stop a worker. `eprintln!` panics when stderr is a closed pipe, and a
//! blocking write to a pipe nobody reads stalls the thread (the poller, holding a lock, once
//! froze the guard while every probe stayed green). So events go through
//! `tracing-appender`'s lossy non-blocking writer: a bounded queue drained by one writer
//! thread; when stderr stalls the queue fills and lines are dropped and counted
//! ([`dropped_lines`]), never waited for. The writer swallows write errors (EPIPE, ENOSPC).

use std::io::{self, Write};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

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

/// Lines waiting for stderr at most; more are dropped.
const QUEUED_LINES: usize = 1024;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
/// Kept for the life of the process: dropping it would wait for (and print about) a stalled writer.
static GUARD: OnceLock<WorkerGuard> = OnceLock::new();

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
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(Stderr);
    let _ = DROPPED.set(writer.error_counter());
    let _ = GUARD.set(guard);
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(filter(level))
        .with_target(false)
        .with_ansi(false)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Log lines dropped because stderr did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// At most this many characters of foreign text (relay or tor) reach a default-level log line.
pub const EXCERPT_CHARS: usize = 80;

/// A bounded, printable excerpt of text that came from the relay or tor, for default-level logs.
///
/// An allow-list, not a deny-list: a deny-list of identifier shapes is always one encoding
/// short (full-width dots, bare onions, split hex). Only plain words survive: ASCII letters
/// (with inner `-`, `_`, `'`, `/`) up to 24 characters, or numbers up to 5 digits, with
/// surrounding punctuation. Every other word becomes `<redacted>`; the text is cut at
/// [`EXCERPT_CHARS`] (`…`).
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&plain_or_redacted(word));
        if out.chars().count() > EXCERPT_CHARS {
            break;
        }
    }
    if out.chars().count() > EXCERPT_CHARS {
        out = out.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    out
}

fn plain_or_redacted(word: &str) -> String {
    const EDGE: &[char] = &[
        '(', ')', '[', ']', '{', '}', '<', '>', ',', '.', ';', ':', '"', '\'', '`', '!', '?',
    ];
    let core = word.trim_matches(EDGE);
    let start = word.len() - word.trim_start_matches(EDGE).len();
    let (prefix, suffix) = (&word[..start], &word[start + core.len()..]);
    let inner = |c: char| matches!(c, '-' | '_' | '\'' | '/');
    let letters = core.len() <= 24
        && core.chars().all(|c| c.is_ascii_alphabetic() || inner(c))
        && core.chars().any(|c| c.is_ascii_alphabetic());
    let number = core.len() <= 5 && core.chars().all(|c| c.is_ascii_digit());
    if core.is_empty() || letters || number {
        // The edges are ASCII punctuation by construction; keep them for readability.
        format!("{prefix}{core}{suffix}")
    } else {
        format!("{prefix}<redacted>{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_hide_identifiers_and_control_bytes() {
        let onion = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz234567";
        let cases = [
            "enode://aabbccdd@198.51.100.77:30303",
            "[2001:db8::1]:30303",
            "0123456789abcdef0123",
            "0123456789ab-cdef0123-4567",
            "abcdef0123456",
            "198．51．100．77",
            "１９８.51.100.77",
            onion,
            "abcdefghijklmnopqrstuvwxyz.onion",
            "enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0",
        ];
        for secret in cases {
            let line = excerpt(&format!("removePeer failed for {secret} now\0\r\n"));
            let middle = line
                .strip_prefix("removePeer failed for ")
                .and_then(|rest| rest.strip_suffix(" now"))
                .unwrap_or_else(|| panic!("{secret}: {line}"));
            // Only the redaction mark and ASCII punctuation around it remain.
            let rest = middle.replace("<redacted>", "");
            assert!(middle.contains("<redacted>"), "{secret}: {line}");
            assert!(
                rest.chars().all(|c| c.is_ascii_punctuation()),
                "{secret}: {line}"
            );
        }
    }

    #[test]
    fn plain_words_and_small_numbers_survive() {
        assert_eq!(
            excerpt("io: Connection refused (os error 111)"),
            "io: Connection refused (os error 111)"
        );
        assert_eq!(
            excerpt("HTTP 500, \"peer not found\"."),
            "HTTP 500, \"peer not found\"."
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        let line = excerpt(&"word ".repeat(10_000));
        assert!(line.chars().count() <= EXCERPT_CHARS + 1, "{}", line.len());
        assert_eq!(excerpt(&"x".repeat(100_000)), "<redacted>");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn closed_stderr_is_not_an_error() {
        assert_eq!(Stderr.write(b"line\n").unwrap(), 5);
        assert!(Stderr.flush().is_ok());
    }
}
