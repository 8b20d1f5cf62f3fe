//! Log lines on stderr. Privacy rule: no peer address, onion, enode or node ID at `info` or above;
//! the only place they appear is `debug` (the leak audit line).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::cli::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn emit(level: LogLevel, tag: &str, message: &str) {
    if level as u8 <= LEVEL.load(Ordering::Relaxed) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "{}.{:03} {tag} {message}",
            now.as_secs(),
            now.subsec_millis()
        );
    }
}

pub fn warn(message: &str) {
    emit(LogLevel::Warn, "WARN ", message);
}

pub fn info(message: &str) {
    emit(LogLevel::Info, "INFO ", message);
}

pub fn debug(message: &str) {
    emit(LogLevel::Debug, "DEBUG", message);
}
