//! Prometheus text format 0.0.4, written from the catalog.
//!
//! Hand-written because the PRD fixes counter names without `_total` (`p2p_ingress_tor`, …),
//! which OpenMetrics and the `prometheus-client` crate cannot express: they append `_total`.

use std::fmt::Write;

use crate::catalog::Metric;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds one exposition; families must be written whole, one after the other.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// A number in Prometheus' float syntax; integers print without a fraction.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        // Debug gives the shortest round-trip form and exponents for large and tiny values.
        format!("{value:?}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, metric: &Metric) -> &mut Self {
        let _ = writeln!(
            self.text,
            "# HELP {} {}",
            metric.name,
            escape_help(metric.help)
        );
        let _ = writeln!(self.text, "# TYPE {} {}", metric.name, metric.kind.as_str());
        self
    }

    /// One sample of `metric`; `label_values` pair up with `metric.labels` in order.
    pub fn sample(&mut self, metric: &Metric, label_values: &[&str], value: f64) -> &mut Self {
        assert_eq!(
            metric.labels.len(),
            label_values.len(),
            "{}: label values do not match the catalog",
            metric.name
        );
        self.text.push_str(metric.name);
        if !label_values.is_empty() {
            self.text.push('{');
            for (index, (name, value)) in metric.labels.iter().zip(label_values).enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{name}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, metric: &Metric, value: f64) -> &mut Self {
        self.family(metric).sample(metric, &[], value)
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BUILD_INFO, INGRESS_TOR, PEERS_TOR};

    #[test]
    fn writes_help_type_and_escaped_samples() {
        let mut exposition = Exposition::default();
        exposition.single(&INGRESS_TOR, 1234.0);
        exposition
            .family(&PEERS_TOR)
            .sample(&PEERS_TOR, &["inbound"], 2.0)
            .sample(&PEERS_TOR, &["outbound"], 0.0);
        exposition
            .family(&BUILD_INFO)
            .sample(&BUILD_INFO, &["a\"b\\c\nd"], 1.0);
        let text = exposition.finish();
        assert_eq!(
            text,
            "# HELP p2p_ingress_tor Bytes received from peers connected over Tor (kernel socket counters).\n\
             # TYPE p2p_ingress_tor counter\n\
             p2p_ingress_tor 1234\n\
             # HELP p2p_peers_tor Connected peers that reached the relay over Tor.\n\
             # TYPE p2p_peers_tor gauge\n\
             p2p_peers_tor{direction=\"inbound\"} 2\n\
             p2p_peers_tor{direction=\"outbound\"} 0\n\
             # HELP relaywatch_build_info Always 1; the version label says which relaywatch is running.\n\
             # TYPE relaywatch_build_info gauge\n\
             relaywatch_build_info{version=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn values() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1.7e9), "1700000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e300), "1e300");
    }

    #[test]
    #[should_panic(expected = "label values do not match the catalog")]
    fn label_arity_is_checked() {
        Exposition::default().sample(&PEERS_TOR, &[], 1.0);
    }
}
