//! One criterion's outcome: a `PASS`/`FAIL` line with its numbers, indented detail lines, and
//! the pods it failed for (which explain firing alerts in criterion 5).

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub pass: bool,
    /// `PASS 1 …` or `FAIL 1 …`.
    pub line: String,
    /// Printed indented under the line.
    pub details: Vec<String>,
    /// `namespace/pod` of every relay this criterion failed for.
    pub pods_failed: BTreeSet<String>,
}

impl Verdict {
    /// A verdict that fails when `problems` is non-empty or `pods_failed` is.
    pub fn new(
        number: u8,
        summary: String,
        mut details: Vec<String>,
        problems: Vec<String>,
        pods_failed: BTreeSet<String>,
    ) -> Verdict {
        let pass = problems.is_empty() && pods_failed.is_empty();
        details.extend(problems);
        Verdict {
            pass,
            line: format!("{} {number} {summary}", if pass { "PASS" } else { "FAIL" }),
            details,
            pods_failed,
        }
    }

    /// A criterion that could not be evaluated at all (a source failed).
    pub fn failed(number: u8, summary: &str, error: &str, pods: BTreeSet<String>) -> Verdict {
        Verdict {
            pass: false,
            line: format!("FAIL {number} {summary}: {error}"),
            details: Vec::new(),
            pods_failed: pods,
        }
    }

    /// The line and its details, as printed.
    pub fn render(&self) -> String {
        let mut out = self.line.clone();
        for detail in &self.details {
            out.push_str("\n    ");
            out.push_str(detail);
        }
        out
    }
}
