//! geth-style log lines on stderr: `INFO [11-26|14:44:43.123] message key=value`.

use std::sync::atomic::{AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(3);

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

/// geth's levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
pub fn enabled(level: u8) -> bool {
    level <= VERBOSITY.load(Ordering::Relaxed)
}

pub fn emit(level: u8, message: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let tag = match level {
        1 => "ERROR",
        2 => "WARN ",
        3 => "INFO ",
        4 => "DEBUG",
        _ => "TRACE",
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (hour, minute, second) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut line = format!(
        "{tag} [{hour:02}:{minute:02}:{second:02}.{:03}] {message:<40}",
        now.subsec_millis()
    );
    for (key, value) in fields {
        line.push_str(&format!(" {key}={value}"));
    }
    eprintln!("{}", line.trim_end());
}

macro_rules! info {
    ($msg:expr $(, $key:literal => $value:expr)* $(,)?) => {
        $crate::log::emit(3, $msg, &[$(($key, &$value as &dyn std::fmt::Display)),*])
    };
}

macro_rules! debug {
    ($msg:expr $(, $key:literal => $value:expr)* $(,)?) => {
        $crate::log::emit(4, $msg, &[$(($key, &$value as &dyn std::fmt::Display)),*])
    };
}

macro_rules! log_warn {
    ($msg:expr $(, $key:literal => $value:expr)* $(,)?) => {
        $crate::log::emit(2, $msg, &[$(($key, &$value as &dyn std::fmt::Display)),*])
    };
}

pub(crate) use {debug, info, log_warn as warn};
