//! `relaywatch-lab drill SCENARIO --dir DIR`: inject a fault into a running lab, wait for the
//! notifications the routing names, clear the fault, wait for the resolved notifications, and
//! leave the lab as it was.
//!
//! A drill runs in its own process beside the lab: it reads `<dir>/lab.json`, acts on the
//! relays' admin APIs itself, asks the lab's control port to stop and start children, and reads
//! the sinks' notification logs. Routing (deploy/alertmanager/alertmanager.yaml): critical →
//! Slack and e-mail, warning → Slack only; a warning that reaches e-mail fails the drill.

mod scenarios;
mod wait;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::labfile::LabFile;
use crate::monitoring::sinks::Status;
pub use scenarios::Scenario;
use wait::{wait_for, wait_quiet, Seen, Want};

/// Which sinks an alert of `severity` must reach, and which it must not.
pub fn routes(severity: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match severity {
        "critical" => (&["slack", "email"], &[]),
        "warning" => (&["slack"], &["email"]),
        _ => (&[], &["slack", "email"]),
    }
}

/// What one drill measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub pod: String,
    pub alert: String,
    pub severity: String,
    /// (sink, seconds from injection) of the firing notification.
    pub fired: Vec<(String, f64)>,
    /// (sink, seconds from clearing) of the resolved notification.
    pub resolved: Vec<(String, f64)>,
    /// Every other alert that notified about this pod meanwhile, in order, with its time.
    pub also: Vec<(String, String, f64)>,
    /// What went wrong; empty when the drill passed.
    pub failures: Vec<String>,
    /// Scenario-specific facts (e.g. "leaking peer removed 3 times").
    pub notes: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// How long to wait for a notification: the slowest rule (`for: 10m` plus windows) and
/// Alertmanager's group wait, scaled, with a margin for Tor.
fn patience(file: &LabFile) -> Duration {
    Duration::from_secs_f64(90.0 + 1_200.0 / file.time_scale)
}

/// Set by the drill command's SIGINT/SIGTERM handler: waits end early and the fault is cleared.
static INTERRUPTED: OnceLock<&'static AtomicBool> = OnceLock::new();

/// Lets Ctrl-C end a drill cleanly (the fault is cleared before the process exits).
pub fn set_interrupt_flag(flag: &'static AtomicBool) {
    let _ = INTERRUPTED.set(flag);
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Runs one scenario against the lab in `file`; errors only when the lab cannot be used at all.
/// Once the fault is injected it is always cleared, whatever fails meanwhile.
pub fn run(file: &LabFile, scenario: Scenario, out: &mut dyn FnMut(&str)) -> Result<Report> {
    let plan = scenario.plan(file)?;
    let (must, must_not) = routes(plan.severity);
    let patience = patience(file);
    out(&format!(
        "drill {}: {} on {} → expect {} ({}) at {}",
        scenario.as_str(),
        plan.fault,
        plan.pod,
        plan.alert,
        plan.severity,
        must.join(" and ")
    ));
    let want = Want {
        alert: plan.alert.to_string(),
        pod: plan.pod.clone(),
    };
    let mut report = Report {
        scenario,
        pod: plan.pod.clone(),
        alert: plan.alert.to_string(),
        severity: plan.severity.to_string(),
        fired: Vec::new(),
        resolved: Vec::new(),
        also: Vec::new(),
        failures: Vec::new(),
        notes: Vec::new(),
    };
    // A pending or firing alert of this pod (an earlier drill's) could hide this drill's
    // notification in a group that is already firing: a precondition, not a warning.
    if let Err(error) = wait_quiet(file, &plan.pod, patience) {
        report.failures.push(format!("not started: {error:#}"));
        return Ok(finish(report, out, None));
    }
    let before = Seen::now(file)?;
    let injected = Instant::now();
    let mut active = match scenario.inject(file, &plan) {
        Ok(active) => active,
        Err(error) => {
            report
                .failures
                .push(format!("could not inject the fault: {error:#}"));
            return Ok(finish(report, out, None));
        }
    };
    out(&format!("  injected: {}", plan.fault));
    let fired = wait_for(
        file,
        &before,
        &want,
        Status::Firing,
        must,
        patience,
        &mut || active.tick(file),
    );
    report.fired = record(
        &fired,
        injected,
        "firing",
        &plan,
        patience,
        &mut report.failures,
        out,
    );
    let hold = scenario.hold(file.time_scale);
    if !hold.is_zero() && !interrupted() {
        out(&format!(
            "  keeping the fault {:.0} s more to see what else fires",
            hold.saturating_sub(injected.elapsed()).as_secs_f64()
        ));
        while injected.elapsed() < hold && !interrupted() {
            let _ = active.tick(file);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    report.notes.extend(active.notes(file));
    if let Some(problem) = active.guard_problem(file) {
        report.failures.push(problem);
    }
    // Resolved notifications count from here: one that arrives while the lab restarts a relay
    // (during clear) is this drill's too.
    let before_clear = Seen::now(file)?;
    let cleared = Instant::now();
    match active.clear(file) {
        Ok(()) => out("  cleared the fault"),
        Err(error) => report.failures.push(format!(
            "could not clear the fault; the lab may need a restart: {error:#}"
        )),
    }
    // Only what fired can resolve: do not wait on a sink that never heard of the alert.
    let fired_at: Vec<&str> = report.fired.iter().map(|(sink, _)| sink.as_str()).collect();
    let resolved = wait_for(
        file,
        &before_clear,
        &want,
        Status::Resolved,
        &fired_at,
        patience,
        &mut || Ok(()),
    );
    report.resolved = record(
        &resolved,
        cleared,
        "resolved",
        &plan,
        patience,
        &mut report.failures,
        out,
    );
    // The routing's negative half: a warning must never have reached e-mail.
    let after = Seen::now(file)?;
    for sink in must_not {
        if after.any_since(&before, sink, &want) {
            report.failures.push(format!(
                "{} reached {sink}, which its routing excludes",
                plan.alert
            ));
        }
    }
    for (alert, sink, at) in after.others_since(&before, &plan.pod, plan.alert) {
        report.also.push((
            alert,
            sink,
            at.saturating_sub(before.unix_ms) as f64 / 1000.0,
        ));
    }
    if interrupted() {
        report.failures.push("interrupted".into());
    }
    Ok(finish(report, out, Some(injected)))
}

/// Prints and returns (sink, seconds since `since`) of what arrived; each missing sink is a failure.
fn record(
    waited: &wait::Waited,
    since: Instant,
    status: &str,
    plan: &scenarios::Plan,
    patience: Duration,
    failures: &mut Vec<String>,
    out: &mut dyn FnMut(&str),
) -> Vec<(String, f64)> {
    let mut times = Vec::new();
    for (sink, at) in &waited.arrived {
        let secs = at.duration_since(since).as_secs_f64();
        out(&format!(
            "  {sink}: {} {status} after {secs:.1} s",
            plan.alert
        ));
        times.push((sink.clone(), secs));
    }
    for sink in &waited.missing {
        failures.push(format!(
            "no {status} {} for {} at {sink} within {:.0} s",
            plan.alert,
            plan.pod,
            patience.as_secs_f64()
        ));
    }
    times
}

fn finish(report: Report, out: &mut dyn FnMut(&str), injected: Option<Instant>) -> Report {
    for line in &report.failures {
        out(&format!("  FAIL: {line}"));
    }
    if let (true, Some(injected)) = (report.passed(), injected) {
        out(&format!(
            "  PASS ({:.1} s)",
            injected.elapsed().as_secs_f64()
        ));
    }
    report
}

/// The `drill all` table.
pub fn table(reports: &[Report], time_scale: f64) -> String {
    let mut out = format!(
        "{:<18} {:<24} {:<44} {:>7} {:>7} {:>8} {:>9}  result\n",
        "scenario", "pod", "alert", "slack s", "email s", "resolv s", "email res"
    );
    for report in reports {
        let at = |list: &[(String, f64)], sink: &str| {
            list.iter()
                .find(|(s, _)| s == sink)
                .map(|(_, secs)| format!("{secs:.1}"))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "{:<18} {:<24} {:<44} {:>7} {:>7} {:>8} {:>9}  {}",
            report.scenario.as_str(),
            report.pod,
            format!("{} ({})", report.alert, report.severity),
            at(&report.fired, "slack"),
            at(&report.fired, "email"),
            at(&report.resolved, "slack"),
            at(&report.resolved, "email"),
            if report.passed() { "PASS" } else { "FAIL" }
        );
        for (alert, sink, secs) in &report.also {
            let _ = writeln!(
                out,
                "{:<18}   also: {alert} at {sink} after {secs:.1} s",
                ""
            );
        }
        for note in &report.notes {
            let _ = writeln!(out, "{:<18}   {note}", "");
        }
    }
    let _ = writeln!(
        out,
        "times in seconds from injection (firing) and from clearing (resolved); rule timing ×{time_scale}"
    );
    out
}

/// Runs `scenarios` in order and prints the table; fails when any drill failed.
pub fn run_all(
    file: &LabFile,
    scenarios: &[Scenario],
    out: &mut dyn FnMut(&str),
) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for scenario in scenarios {
        if interrupted() {
            break;
        }
        let report = run(file, *scenario, out)?;
        reports.push(report);
        // Let the lab settle (re-peering, first scrapes) before the next fault.
        std::thread::sleep(Duration::from_secs_f64((60.0 / file.time_scale).max(3.0)));
    }
    out(&table(&reports, file.time_scale));
    if reports.iter().any(|r| !r.passed()) {
        bail!(
            "{} of {} drills failed",
            reports.iter().filter(|r| !r.passed()).count(),
            reports.len()
        );
    }
    Ok(reports)
}
