//! Decoding Prometheus's and Alertmanager's HTTP API replies into the few fields `verify` reads. Pure.
//!
//! Every failure is a short `String` for a report line: Prometheus's own error text is passed
//! through `log::excerpt` (bounded, identifiers redacted), since a query error can quote labels.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

pub type Labels = BTreeMap<String, String>;

/// One instant-vector sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// One range-vector series: `(unix seconds, value)` pairs, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(f64, f64)>,
}

/// An active scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub labels: Labels,
    pub health: String,
    pub last_error: String,
    pub scrape_interval: Option<Duration>,
}

/// A loaded rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub group: String,
    pub name: String,
    pub alerting: bool,
    pub health: String,
    pub last_error: String,
}

/// An alert Prometheus holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub labels: Labels,
    pub state: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// The `data` of a Prometheus API reply with `"status": "success"`.
pub fn data(body: &str) -> Result<Json, String> {
    let reply: Json = serde_json::from_str(body).map_err(|_| {
        format!(
            "not a Prometheus API reply (not JSON: {})",
            crate::log::excerpt(body)
        )
    })?;
    if reply["status"] == "success" {
        return Ok(reply["data"].clone());
    }
    let kind = reply["errorType"].as_str().unwrap_or("no errorType");
    let error = reply["error"].as_str().unwrap_or("no error text");
    Err(format!(
        "Prometheus answered status {} ({kind}: {})",
        reply["status"],
        crate::log::excerpt(error)
    ))
}

fn labels(value: &Json) -> Labels {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
        .collect()
}

/// `"1.5"`, `"NaN"`, `"+Inf"` as Prometheus writes sample values.
fn number(value: &Json) -> Option<f64> {
    value.as_str()?.parse().ok()
}

/// The result of an instant query that returns a vector (a scalar becomes one unlabelled sample).
pub fn vector(body: &str) -> Result<Vec<Sample>, String> {
    let data = data(body)?;
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("a vector reply without a result array")?
            .iter()
            .map(|sample| {
                Ok(Sample {
                    labels: labels(&sample["metric"]),
                    value: number(&sample["value"][1]).ok_or("a sample without a value")?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: Labels::new(),
            value: number(&data["result"][1]).ok_or("a scalar without a value")?,
        }]),
        other => Err(format!("expected a vector, Prometheus returned {other:?}")),
    }
}

/// The result of an instant query of a range selector (`x[1h]`): raw samples per series.
pub fn matrix(body: &str) -> Result<Vec<Series>, String> {
    let data = data(body)?;
    if data["resultType"] != "matrix" {
        return Err(format!(
            "expected a matrix, Prometheus returned {}",
            data["resultType"]
        ));
    }
    data["result"]
        .as_array()
        .ok_or("a matrix reply without a result array")?
        .iter()
        .map(|series| {
            let samples = series["values"]
                .as_array()
                .ok_or("a series without values")?
                .iter()
                .map(|pair| Some((pair[0].as_f64()?, number(&pair[1])?)))
                .collect::<Option<Vec<_>>>()
                .ok_or("a malformed sample")?;
            Ok(Series {
                labels: labels(&series["metric"]),
                samples,
            })
        })
        .collect()
}

/// `/api/v1/targets`: the active targets.
pub fn targets(body: &str) -> Result<Vec<Target>, String> {
    let data = data(body)?;
    Ok(data["activeTargets"]
        .as_array()
        .ok_or("a targets reply without activeTargets")?
        .iter()
        .map(|target| Target {
            labels: labels(&target["labels"]),
            health: target["health"].as_str().unwrap_or_default().to_string(),
            last_error: target["lastError"].as_str().unwrap_or_default().to_string(),
            scrape_interval: target["scrapeInterval"]
                .as_str()
                .and_then(|text| promql_parser::util::parse_duration(text).ok()),
        })
        .collect())
}

/// `/api/v1/rules`: every rule of every group.
pub fn rules(body: &str) -> Result<Vec<Rule>, String> {
    let data = data(body)?;
    let mut out = Vec::new();
    for group in data["groups"]
        .as_array()
        .ok_or("a rules reply without groups")?
    {
        for rule in group["rules"].as_array().into_iter().flatten() {
            out.push(Rule {
                group: group["name"].as_str().unwrap_or_default().to_string(),
                name: rule["name"].as_str().unwrap_or_default().to_string(),
                alerting: rule["type"] == "alerting",
                health: rule["health"].as_str().unwrap_or_default().to_string(),
                last_error: rule["lastError"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(out)
}

/// `/api/v1/alerts`: pending and firing alerts.
pub fn alerts(body: &str) -> Result<Vec<Alert>, String> {
    let data = data(body)?;
    Ok(data["alerts"]
        .as_array()
        .ok_or("an alerts reply without alerts")?
        .iter()
        .map(|alert| Alert {
            labels: labels(&alert["labels"]),
            state: alert["state"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

/// Alertmanager's `/api/v2/status`: the receiver names of the configuration it loaded.
pub fn alertmanager_receivers(body: &str) -> Result<Vec<String>, String> {
    let status: Json = serde_json::from_str(body).map_err(|_| {
        format!(
            "not an Alertmanager status reply (not JSON: {})",
            crate::log::excerpt(body)
        )
    })?;
    let original = status["config"]["original"]
        .as_str()
        .ok_or("the status reply has no config.original")?;
    let config: Json = serde_norway::from_str(original)
        .map_err(|error| format!("config.original is not YAML: {error}"))?;
    Ok(config["receivers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|receiver| receiver["name"].as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_and_errors() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,"2"]},{"metric":{},"value":[1,"NaN"]}]}}"#;
        let samples = vector(ok).unwrap();
        assert_eq!(samples[0].labels["pod"], "a");
        assert_eq!(samples[0].value, 2.0);
        assert!(samples[1].value.is_nan());
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(vector(scalar).unwrap()[0].value, 3.0);
        for (body, want) in [
            ("<html>502 Bad Gateway</html>", "not JSON"),
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
                "bad_data: parse error",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "expected a vector",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
                "without a value",
            ),
            ("", "not JSON"),
        ] {
            let error = vector(body).unwrap_err();
            assert!(error.contains(want), "{body}: {error}");
        }
    }

    #[test]
    fn matrices() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"p"},"values":[[10.5,"0"],[11.5,"1"]]}]}}"#;
        let series = matrix(body).unwrap();
        assert_eq!(series[0].samples, vec![(10.5, 0.0), (11.5, 1.0)]);
        assert!(matrix(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#).is_err());
    }

    #[test]
    fn targets_rules_alerts_and_receivers() {
        let body = r#"{"status":"success","data":{"activeTargets":[{"labels":{"job":"gethrelay","pod":"p"},"health":"down","lastError":"sample limit exceeded","scrapeInterval":"30s"}],"droppedTargets":[]}}"#;
        let target = &targets(body).unwrap()[0];
        assert_eq!(target.last_error, "sample limit exceeded");
        assert_eq!(target.scrape_interval, Some(Duration::from_secs(30)));
        let body = r#"{"status":"success","data":{"groups":[{"name":"g","rules":[{"type":"alerting","name":"A","health":"ok"},{"type":"recording","name":"r","health":"err","lastError":"x"}]}]}}"#;
        let rules = rules(body).unwrap();
        assert!(rules[0].alerting && !rules[1].alerting);
        assert_eq!(rules[1].last_error, "x");
        let body = r#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"Watchdog"},"state":"firing"}]}}"#;
        assert_eq!(alerts(body).unwrap()[0].name(), "Watchdog");
        let body = r#"{"config":{"original":"route:\n  receiver: x\nreceivers:\n- name: slack\n- name: email\n"}}"#;
        assert_eq!(alertmanager_receivers(body).unwrap(), ["slack", "email"]);
        assert!(alertmanager_receivers("{}")
            .unwrap_err()
            .contains("config.original"));
        assert!(alertmanager_receivers("nope")
            .unwrap_err()
            .contains("not JSON"));
    }
}
