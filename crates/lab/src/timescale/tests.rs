use std::path::PathBuf;
use std::process::Command;

use super::*;

#[test]
fn scale_duration_table() {
    let table = [
        // (input, factor, expected)
        ("5m", 20, "15s"),
        ("15m", 20, "45s"),
        ("2m", 20, "6s"),
        ("1h30m", 20, "4m30s"),
        ("90s", 20, "4s500ms"),
        ("1d", 20, "1h12m"),
        ("1w", 20, "8h24m"),
        ("30m", 20, "1m30s"),
        // Uneven: rounded to the nearest millisecond.
        ("1m", 7, "8s571ms"),
        ("1m", 9, "6s667ms"),
        // The floor: nothing shorter than 1s, unless the original was.
        ("10s", 20, "1s"),
        ("1s", 20, "1s"),
        ("1500ms", 20, "1s"),
        ("500ms", 20, "500ms"),
        ("0s", 20, "0s"),
        ("0", 20, "0s"),
        // Factor 1 keeps the text itself, not a normalised spelling.
        ("5m", 1, "5m"),
        ("90s", 1, "90s"),
        ("1h30m", 1, "1h30m"),
        ("0", 1, "0"),
    ];
    for (input, factor, expected) in table {
        let got = scale_duration(input, factor);
        assert_eq!(got.ok().as_deref(), Some(expected), "{input} / {factor}");
    }
}

#[test]
fn scale_duration_rejects_what_prometheus_rejects() {
    for bad in [
        "", "5", "m", "5x", "1m1h", "5m5m", "-5m", "1.5m", " 5m", "5m ",
    ] {
        assert!(
            scale_duration(bad, 20).is_err(),
            "{bad:?} should be rejected"
        );
    }
    assert!(scale_duration("5m", 0).is_err(), "factor 0");
}

#[test]
fn parse_and_format_round_trip() {
    for (text, ms) in [
        ("1h30m", 5_400_000),
        ("90s", 90_000),
        ("1d2h3m4s5ms", 93_784_005),
    ] {
        assert_eq!(parse_duration(text).ok(), Some(ms), "{text}");
    }
    for ms in [1, 999, 1_000, 61_001, 5_400_000, 93_784_005, 31_536_000_000] {
        assert_eq!(parse_duration(&format_duration(ms)).ok(), Some(ms), "{ms}");
    }
}

#[test]
fn scale_expr_table() {
    let table = [
        ("rate(x[5m])", "rate(x[15s])"),
        (
            "increase(x{job=\"relaywatch\"}[15m]) > 0",
            "increase(x{job=\"relaywatch\"}[45s]) > 0",
        ),
        (
            "max_over_time(rate(x[5m])[10m:1m])",
            "max_over_time(rate(x[15s])[30s:3s])",
        ),
        ("max_over_time(x[10m:])", "max_over_time(x[30s:])"),
        ("x offset 15m", "x offset 45s"),
        ("x offset -5m", "x offset -15s"),
        ("rate(x[5m] offset -1h)", "rate(x[15s] offset -3m)"),
        (
            "last_over_time(x[1d] offset 15m)",
            "last_over_time(x[1h12m] offset 45s)",
        ),
        (
            "sum(x offset 1h30m) by (pod)",
            "sum(x offset 4m30s) by (pod)",
        ),
        ("rate(x[90s])", "rate(x[4s500ms])"),
        ("rate(x[1h30m])", "rate(x[4m30s])"),
        // The floor applies inside expressions too.
        ("rate(x[10s])", "rate(x[1s])"),
        // `@` takes a timestamp or start()/end(), never a duration: only the range changes.
        ("rate(x[5m] @ 1609746000)", "rate(x[15s] @ 1609746000)"),
        ("x @ start() offset 1h30m", "x @ start() offset 4m30s"),
        ("x @ end()", "x @ end()"),
        // Strings are single tokens: a duration-looking value inside never changes.
        ("x{path=\"[5m]\"}", "x{path=\"[5m]\"}"),
        ("x{a='offset 5m'}[5m]", "x{a='offset 5m'}[15s]"),
        ("x{a=~`.*[5m]`}", "x{a=~`.*[5m]`}"),
        (
            "label_replace(x[5m], \"mode\", \"[5m] $1\", \"s\", \"(.+)\")",
            "label_replace(x[15s], \"mode\", \"[5m] $1\", \"s\", \"(.+)\")",
        ),
        // Comments are skipped by the lexer.
        ("x # over [5m]\n+ y[5m]", "x # over [5m]\n+ y[15s]"),
        // Numbers that stand for time are not durations: kept (documented).
        ("x > time() - 15 * 60", "x > time() - 15 * 60"),
        // Layout survives: only a duration's own bytes are replaced.
        (
            "(\n  1 - increase(a[2m])\n    / increase(b[2m])\n) > 0.5\n",
            "(\n  1 - increase(a[6s])\n    / increase(b[6s])\n) > 0.5\n",
        ),
    ];
    for (input, expected) in table {
        let got = scale_expr(input, 20);
        assert_eq!(got.as_deref().ok(), Some(expected), "{input}: {got:?}");
        let same = scale_expr(input, 1);
        assert_eq!(same.as_deref().ok(), Some(input), "factor 1: {input}");
    }
}

#[test]
fn scale_expr_refuses_durations_it_cannot_scale() {
    for bad in [
        "x[300]",
        "x[5m:60]",
        "x offset 60",
        "x offset -60",
        "rate(x[5m",
    ] {
        assert!(scale_expr(bad, 20).is_err(), "{bad:?} should be refused");
    }
}

const SAMPLE: &str = r#"
groups:
  - name: g
    interval: 1m
    query_offset: 30s
    rules:
      - record: r:sum
        expr: sum(rate(x[5m]))
      - alert: A
        expr: |
          increase(y{path="[5m]"}[15m]) > 0
        for: 10m
        keep_firing_for: 1h30m
        labels:
          severity: warning
          window: 5m
        annotations:
          description: 'Failing for 5 minutes; see rate(y[5m]).'
  - name: no-rules
"#;

#[test]
fn scale_rules_scales_durations_and_nothing_else() {
    let scaled = scale_rules(SAMPLE, 20).expect("scales");
    let value: Value = serde_norway::from_str(&scaled).expect("output is YAML");
    let group = &value["groups"][0];
    assert_eq!(group["interval"].as_str(), Some("3s"));
    assert_eq!(group["query_offset"].as_str(), Some("1s500ms"));
    assert_eq!(
        group["rules"][0]["expr"].as_str(),
        Some("sum(rate(x[15s]))")
    );
    let alert = &group["rules"][1];
    assert_eq!(
        alert["expr"].as_str(),
        Some("increase(y{path=\"[5m]\"}[45s]) > 0\n")
    );
    assert_eq!(alert["for"].as_str(), Some("30s"));
    assert_eq!(alert["keep_firing_for"].as_str(), Some("4m30s"));
    // Labels and annotations are text for humans and routing, not timing.
    let input: Value = serde_norway::from_str(SAMPLE).expect("sample is YAML");
    let original = &input["groups"][0]["rules"][1];
    assert_eq!(alert["labels"], original["labels"]);
    assert_eq!(alert["annotations"], original["annotations"]);
    assert!(scaled.starts_with("# Generated by the lab"), "{scaled}");
}

#[test]
fn factor_one_is_the_same_rule_file() {
    let same = scale_rules(SAMPLE, 1).expect("scales");
    let before: Value = serde_norway::from_str(SAMPLE).expect("sample is YAML");
    let after: Value = serde_norway::from_str(&same).expect("output is YAML");
    assert_eq!(before, after);
}

#[test]
fn scale_rules_names_the_bad_rule() {
    let bad = "groups:\n  - name: g\n    rules:\n      - alert: Bad\n        expr: x\n        for: 5 minutes\n";
    let error = format!("{:#}", scale_rules(bad, 20).expect_err("bad for"));
    assert!(error.contains("Bad") && error.contains("for"), "{error}");
    assert!(scale_rules("groups: 3", 20).is_err());
    assert!(scale_rules(": : :", 20).is_err());
}

fn real_rules() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rules/gethrelay.rules.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every rule's `for:` in milliseconds, keyed by group name and rule position.
fn for_durations(yaml: &str) -> Vec<(String, usize, u64)> {
    let file: Value = serde_norway::from_str(yaml).expect("rule file is YAML");
    let mut found = Vec::new();
    for group in file["groups"].as_sequence().expect("groups") {
        let name = group["name"].as_str().expect("group name").to_string();
        for (index, rule) in group["rules"]
            .as_sequence()
            .expect("rules")
            .iter()
            .enumerate()
        {
            if let Some(text) = rule.get("for").and_then(Value::as_str) {
                found.push((
                    name.clone(),
                    index,
                    parse_duration(text).expect("for parses"),
                ));
            }
        }
    }
    found
}

#[test]
fn real_rule_file_scaled_by_20() {
    let source = real_rules();
    let scaled = scale_rules(&source, 20).expect("the real rule file scales");

    let before = for_durations(&source);
    let after = for_durations(&scaled);
    assert!(
        before.len() >= 10,
        "expected the real file's alerts, found {before:?}"
    );
    let expected: Vec<_> = before
        .iter()
        .map(|(g, i, ms)| (g.clone(), *i, ms / 20))
        .collect();
    assert!(
        before.iter().all(|(_, _, ms)| ms % 20 == 0),
        "production for: values divide by 20"
    );
    assert_eq!(after, expected);

    // The leak rule's windows: [15m] → [45s], [1d] offset 15m → [1h12m] offset 45s.
    assert!(
        scaled.contains("[45s]") && scaled.contains("[1h12m] offset 45s"),
        "{scaled}"
    );
    assert!(
        !scaled.contains("[15m]"),
        "an unscaled range is left: {scaled}"
    );

    promtool_check(&scaled);
}

/// `promtool check rules` on the text; skips (printing why) without promtool, unless `CI` is set.
fn promtool_check(rules: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scaled.rules.yaml");
    std::fs::write(&path, rules).expect("write scaled rules");
    let output = match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("promtool: {error} (CI is set, so this test may not be skipped)")
        }
        Err(error) => {
            eprintln!(
                "skipped: promtool check rules: {error}; Debian's `prometheus` package has it"
            );
            return;
        }
    };
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}\n--- scaled file ---\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}
