//! Criterion 6's leak count: how many leaks `relaywatch_clearnet_leaks_total` counted in the
//! last hour, from raw samples. Pure.
//!
//! A pod can hold several series (a recreated pod gets a new IP, so a new `instance`), and a
//! process can restart between two scrapes of one series; the new process counts from 0, so a
//! value that did not drop can still be all new leaks (old process at 1, new one at 1). Like the
//! alert rule, a change of `process_start_time_seconds` (scraped with the counter, so at the same
//! timestamps) marks a restart, and the new process's value counts in full. Where the start time
//! cannot be seen, every sample is taken for a restart: a false alarm is possible, a missed leak
//! is not.

use std::time::Duration;

use super::api::{Labels, Series};

/// Leaks counted for one pod over its series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LeakCount {
    pub leaks: f64,
    /// Samples whose process start time was unknown and counted as a restart: the count is then
    /// an upper bound (an old leak can show again), never an undercount.
    pub blind: usize,
}

/// A series' labels without `__name__`: the target's, shared by the counter and the start time.
fn target(labels: &Labels) -> Labels {
    let mut labels = labels.clone();
    labels.remove("__name__");
    labels
}

/// The start time scraped with the sample at `time` (same scrape, same timestamp).
fn start_at(starts: &[(f64, f64)], time: f64) -> Option<f64> {
    starts
        .iter()
        .find(|(at, _)| (at - time).abs() < 1e-3)
        .map(|(_, start)| *start)
}

/// Leaks in one counter series, oldest sample first. `starts` are the process start times of
/// the same target. The first value counts in full when the series (or its process) began inside
/// the window: the counter started at 0 then. "Began" is read from the process start time, or
/// else from a first sample more than two scrape intervals after the window's start; that also
/// counts a leak from before the window when Prometheus, not the exporter, is young (a false alarm).
pub fn series_leaks(
    samples: &[(f64, f64)],
    starts: &[(f64, f64)],
    window_start: f64,
    scrape: Duration,
) -> LeakCount {
    let mut count = LeakCount::default();
    let Some(&(first_time, first_value)) = samples.first() else {
        return count;
    };
    let first_start = start_at(starts, first_time);
    if first_time > window_start + 2.0 * scrape.as_secs_f64()
        || first_start.is_some_and(|start| start > window_start)
    {
        count.leaks += first_value;
    }
    let mut previous = (first_value, first_start);
    for &(time, value) in &samples[1..] {
        let start = start_at(starts, time);
        let restarted = match (previous.1, start) {
            (Some(before), Some(now)) => before != now,
            // Unknown: it may have restarted; only a zero counter holds nothing new.
            _ => {
                if value > 0.0 {
                    count.blind += 1;
                }
                true
            }
        };
        count.leaks += if restarted || value < previous.0 {
            value
        } else {
            value - previous.0
        };
        previous = (value, start);
    }
    count
}

/// Leaks of one pod: the sum over every counter series with its namespace and pod, each with
/// the start times of its own target.
pub fn pod_leaks(
    counters: &[&Series],
    starts: &[Series],
    window_start: f64,
    scrape: Duration,
) -> LeakCount {
    let mut total = LeakCount::default();
    for series in counters {
        let key = target(&series.labels);
        let own = starts
            .iter()
            .find(|start| target(&start.labels) == key)
            .map_or(&[][..], |start| start.samples.as_slice());
        let count = series_leaks(&series.samples, own, window_start, scrape);
        total.leaks += count.leaks;
        total.blind += count.blind;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: Duration = Duration::from_secs(5);
    const START: f64 = 1000.0;

    fn series(instance: &str, name: &str, samples: Vec<(f64, f64)>) -> Series {
        let labels = [
            ("__name__", name),
            ("namespace", "gethrelay"),
            ("pod", "p-0"),
            ("instance", instance),
        ];
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples,
        }
    }

    /// Start times at the samples' timestamps: `old` before `switch_at`, then `new`.
    fn starts(samples: &[(f64, f64)], old: f64, switch_at: f64, new: f64) -> Vec<(f64, f64)> {
        samples
            .iter()
            .map(|(t, _)| (*t, if *t < switch_at { old } else { new }))
            .collect()
    }

    #[test]
    fn one_series() {
        let old = 10.0;
        for (samples, switch_at, want, why) in [
            (vec![], f64::INFINITY, 0.0, "no samples"),
            (
                vec![(1003.0, 5.0), (1008.0, 5.0)],
                f64::INFINITY,
                0.0,
                "old series, flat",
            ),
            (
                vec![(1003.0, 5.0), (1008.0, 6.0)],
                f64::INFINITY,
                1.0,
                "old series, one leak",
            ),
            (
                vec![(1003.0, 5.0), (1008.0, 1.0), (1013.0, 2.0)],
                1008.0,
                2.0,
                "restart, counter dropped",
            ),
            (
                vec![(1003.0, 1.0), (1008.0, 1.0), (1013.0, 1.0)],
                1013.0,
                1.0,
                "restart, the new process counted one leak before its first scrape (1,1 | 1)",
            ),
            (
                vec![(1003.0, 1.0), (1008.0, 1.0), (1013.0, 3.0)],
                1013.0,
                3.0,
                "restart, the new process counted more than the old one",
            ),
        ] {
            let starts = starts(&samples, old, switch_at, 1010.0);
            let count = series_leaks(&samples, &starts, START, SCRAPE);
            assert_eq!(
                count,
                LeakCount {
                    leaks: want,
                    blind: 0
                },
                "{why}"
            );
        }
    }

    #[test]
    fn young_series_and_processes() {
        // The series began late in the window: its first value was counted inside it.
        let late = vec![(2000.0, 3.0), (2005.0, 3.0)];
        assert_eq!(
            series_leaks(&late, &starts(&late, 1990.0, 0.0, 1990.0), START, SCRAPE).leaks,
            3.0
        );
        // Sampled from the window's start, but by a process that started inside the window.
        let early = vec![(1003.0, 1.0), (1008.0, 1.0)];
        assert_eq!(
            series_leaks(&early, &starts(&early, 1001.0, 0.0, 1001.0), START, SCRAPE).leaks,
            1.0
        );
        // A process from before the window, sampled from its start: its old leak is not new.
        assert_eq!(
            series_leaks(&early, &starts(&early, 500.0, 0.0, 500.0), START, SCRAPE).leaks,
            0.0
        );
    }

    #[test]
    fn unknown_start_times_count_every_non_zero_sample() {
        let samples = vec![(1003.0, 1.0), (1008.0, 1.0), (1013.0, 1.0)];
        let count = series_leaks(&samples, &[], START, SCRAPE);
        assert_eq!(
            count,
            LeakCount {
                leaks: 2.0,
                blind: 2
            }
        );
        let zero = vec![(1003.0, 0.0), (1008.0, 0.0)];
        assert_eq!(
            series_leaks(&zero, &[], START, SCRAPE),
            LeakCount::default()
        );
    }

    #[test]
    fn a_recreated_pod_sums_both_series() {
        // The old pod leaked (0 → 1) and was replaced; the new pod's series is clean. Whichever
        // series comes first, the leak counts.
        let old_pod = series(
            "10.0.0.1:9476",
            "relaywatch_clearnet_leaks_total",
            vec![(1003.0, 0.0), (1008.0, 1.0)],
        );
        let new_pod = series(
            "10.0.0.2:9476",
            "relaywatch_clearnet_leaks_total",
            vec![(1203.0, 0.0), (1208.0, 0.0)],
        );
        let old_start = series(
            "10.0.0.1:9476",
            "process_start_time_seconds",
            vec![(1003.0, 500.0), (1008.0, 500.0)],
        );
        let new_start = series(
            "10.0.0.2:9476",
            "process_start_time_seconds",
            vec![(1203.0, 1200.0), (1208.0, 1200.0)],
        );
        let starts = [new_start, old_start];
        for counters in [[&new_pod, &old_pod], [&old_pod, &new_pod]] {
            let count = pod_leaks(&counters, &starts, START, SCRAPE);
            assert_eq!(
                count,
                LeakCount {
                    leaks: 1.0,
                    blind: 0
                }
            );
        }
    }
}
