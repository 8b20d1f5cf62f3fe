//! `relaywatch verify --config FILE`: checks the PRD's success criteria against a running
//! fleet (Prometheus, Alertmanager and every relay's admin API, e.g. through
//! `kubectl port-forward`) and prints one `PASS`/`FAIL` line per criterion.
//!
//! IO happens in `gather` through a [`Sources`]; every criterion is a pure function of the
//! gathered facts. Only pod names and counts are printed, never a peer.

pub mod api;
pub mod checks;
pub mod client;
pub mod config;
pub mod dashboards;
pub mod gather;
pub mod leaks;
pub mod only_onion;
pub mod peers;
pub mod scrapes;
pub mod verdict;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

pub use config::Config;
pub use gather::{Facts, Sources};
pub use verdict::Verdict;

/// Exit code when every criterion passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code when a criterion failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code for an unreadable or invalid configuration.
pub const EXIT_USAGE: u8 = 2;

/// The seven criteria, in the PRD's order, from gathered facts.
pub fn evaluate(config: &Config, facts: &Facts) -> Vec<Verdict> {
    let mut verdicts = vec![
        checks::check_targets(config, facts),
        scrapes::check_scrapes(config, facts),
        checks::check_dashboards(facts),
        peers::check_routes(config, facts),
        only_onion::check_only_onion(config, facts),
        peers::check_peer_counts(config, facts),
    ];
    // A firing alert is explained only by another criterion's failure for the same pod.
    let explained: BTreeSet<String> = verdicts
        .iter()
        .flat_map(|verdict| verdict.pods_failed.iter().cloned())
        .collect();
    verdicts.insert(4, checks::check_alerts(config, facts, &explained));
    verdicts
}

/// Gathers through `sources` and evaluates.
pub fn verify(config: &Config, sources: &dyn Sources) -> Vec<Verdict> {
    evaluate(config, &gather::gather(config, sources))
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "--config {}: cannot read it ({error}); pass the verify YAML file",
            path.display()
        )
    })?;
    config::parse(&text).map_err(|error| format!("--config {}: {error}", path.display()))
}

/// The subcommand: prints the report on stdout and returns the exit code.
pub fn main(path: &Path) -> u8 {
    let config = match load(path) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "relaywatch verify: error: {error}");
            return EXIT_USAGE;
        }
    };
    let sources = client::HttpSources::new(&config);
    let verdicts = verify(&config, &sources);
    let mut stdout = std::io::stdout().lock();
    for verdict in &verdicts {
        // A closed stdout must not turn a report into a panic; the exit code still says.
        let _ = writeln!(stdout, "{}", verdict.render());
    }
    if verdicts.iter().all(|verdict| verdict.pass) {
        EXIT_PASS
    } else {
        EXIT_FAIL
    }
}
