//! The lab's monitoring: a real Prometheus and Alertmanager configured from the deploy bundle,
//! and in-process sinks standing in for Slack and the SMTP relay.
//!
//! Nothing here is a hand-kept copy of a deploy file: the Prometheus scrape config is derived
//! from `deploy/kustomize/base/servicemonitor.yaml` and the Alertmanager config is
//! `deploy/alertmanager/alertmanager.yaml` with the few lab changes made by code and listed,
//! so a change to either file reaches the lab or fails loudly.
//!
//! [`stack`] starts them together: `Alerting::start` (both sinks, the secrets they need,
//! Alertmanager) and then `start_prometheus` (scaled rules, scrape config, Prometheus) with
//! the Alertmanager's address. The sinks' JSON-lines files are the drills' evidence.

pub mod alertmanager;
mod daemon;
pub mod prometheus;
pub mod sinks;
pub mod stack;

use anyhow::{bail, Result};

pub use daemon::check_port_free;

use crate::timescale::{format_duration, parse_duration};

/// Divides a Prometheus duration by `time_scale`, rounded to the millisecond and never below
/// `floor_ms`; returns the milliseconds and the text to write into a config.
pub fn scale_duration(text: &str, time_scale: f64, floor_ms: u64) -> Result<(u64, String)> {
    check_time_scale(time_scale)?;
    let ms = parse_duration(text)?;
    let scaled = ((ms as f64 / time_scale).round() as u64).max(floor_ms);
    Ok((scaled, format_duration(scaled)))
}

/// A time scale is how many times faster than production the lab runs: 1 or more.
pub fn check_time_scale(time_scale: f64) -> Result<()> {
    if !time_scale.is_finite() || time_scale < 1.0 {
        bail!("time scale {time_scale} is not a number ≥ 1 (1 runs production timing, 20 runs 20× faster)");
    }
    Ok(())
}

/// Whether Debian's monitoring binaries are on PATH: prints why a test skips when one is
/// missing, and panics instead when `CI` is set (a skipped test in CI would hide a failure).
pub fn binaries_available_or_skip(test: &str, binaries: &[&str]) -> bool {
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|binary| daemon::find_on_path(binary).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not on PATH; `apt-get install prometheus prometheus-alertmanager` (or `cargo xtask test`) installs them",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why} (CI is set, so this test may not be skipped)");
    }
    eprintln!("skipped: {test}: {why}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_scale_round_and_floor() {
        assert_eq!(
            scale_duration("30s", 20.0, 1000).unwrap(),
            (1500, "1s500ms".into())
        );
        assert_eq!(
            scale_duration("15s", 20.0, 1000).unwrap(),
            (1000, "1s".into())
        );
        assert_eq!(
            scale_duration("12h", 20.0, 1000).unwrap(),
            (2_160_000, "36m".into())
        );
        assert_eq!(
            scale_duration("5m", 1.0, 1000).unwrap(),
            (300_000, "5m".into())
        );
        assert!(scale_duration("5m", 0.0, 1000).is_err());
        assert!(scale_duration("5m", f64::NAN, 1000).is_err());
        assert!(scale_duration("5 minutes", 2.0, 1000).is_err());
    }
}
