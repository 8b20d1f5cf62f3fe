//! Lab rule timing: the production rule file with every duration divided by a factor.
//!
//! Production `for:` durations make drills slow (relay down → Slack took 165 s by hand), so the
//! lab runs Prometheus with a rule file generated at start from `deploy/rules/gethrelay.rules.yaml`
//! by [`scale_rules`], never with a committed copy that could drift from the real one.
//!
//! What is scaled: each rule's `for:` and `keep_firing_for:`, each group's `interval:` and
//! `query_offset:`, and inside `expr` every range `[15m]`, subquery `[10m:1m]` and `offset 15m`
//! (also `offset -5m`). What is not: labels, annotations (a description saying "for 5 minutes"
//! keeps saying so; the lab's summary says the timing is scaled), `@` timestamps (absolute
//! times, not durations), and plain numbers that stand for time, such as the leak rule's
//! `time() - 15 * 60`: PromQL cannot tell them from any other number, so that comparison keeps
//! production timing.
//!
//! Rounding: a scaled duration is rounded to the nearest millisecond (Prometheus' own
//! resolution, and its duration syntax has `ms`), and never made shorter than
//! [`MIN_DURATION_MS`] unless the original already was; zero stays zero.
//!
//! Durations inside `expr` are found with `promql-parser`'s lexer, the same tokenizer its parser
//! uses: a `T_DURATION` token is a range, subquery or offset duration by construction, and string
//! literals (a `[5m]` inside a label matcher's value) are single `T_STRING` tokens that are never
//! touched. Only the durations' bytes are replaced, so the rest of the expression keeps its text.

use anyhow::{bail, Context, Result};
use lrpar::{Lexeme, Lexer};
use promql_parser::parser::token::{
    T_DURATION, T_LEFT_BRACKET, T_NUMBER, T_OFFSET, T_RIGHT_BRACKET, T_SUB,
};
use serde_norway::{Mapping, Value};

/// Nothing scaled becomes shorter than this (1 s): a `for:` or window of a few milliseconds
/// would only measure evaluation jitter.
pub const MIN_DURATION_MS: u64 = 1_000;

/// Prometheus' duration units, longest first, in the order its syntax requires them.
const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Rule-level keys that hold a duration.
const RULE_DURATION_KEYS: &[&str] = &["for", "keep_firing_for"];
/// Group-level keys that hold a duration.
const GROUP_DURATION_KEYS: &[&str] = &["interval", "query_offset"];

/// Parses a Prometheus duration (`1h30m`, `90s`, `500ms`, `0`) into milliseconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    if text.is_empty() {
        bail!("empty duration");
    }
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen: units must come in order, each at most once.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("`{text}` is not a Prometheus duration (expected e.g. 5m, 1h30m, 90s)");
        }
        let number: u64 = rest[..digits]
            .parse()
            .with_context(|| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer unit must win.
        let unit = UNITS[next_unit..]
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| rest.starts_with(name))
            .max_by_key(|(_, (name, _))| name.len());
        let Some((offset, (name, millis))) = unit else {
            bail!("`{text}` is not a Prometheus duration (units y w d h m s ms, in that order)");
        };
        next_unit += offset + 1;
        rest = &rest[name.len()..];
        total = number
            .checked_mul(*millis)
            .and_then(|ms| total.checked_add(ms))
            .with_context(|| format!("`{text}`: duration too large"))?;
    }
    Ok(total)
}

/// Formats milliseconds as a Prometheus duration, days and below (`1h12m`, `45s`, `1s500ms`).
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut rest = ms;
    let mut out = String::new();
    // Weeks and years are skipped so the output reads the same way the rule file does.
    for (name, millis) in UNITS.iter().skip(2) {
        let count = rest / millis;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
            rest -= count * millis;
        }
    }
    out
}

/// Divides one duration by `factor`: rounded to the millisecond, floored at
/// [`MIN_DURATION_MS`] (or the original, if that was shorter). Factor 1 returns the text as is.
pub fn scale_duration(text: &str, factor: u32) -> Result<String> {
    if factor == 0 {
        bail!("time scale factor must be at least 1");
    }
    let ms = parse_duration(text)?;
    if factor == 1 {
        return Ok(text.to_string());
    }
    let factor = u64::from(factor);
    let scaled = (ms + factor / 2) / factor;
    let floor = ms.min(MIN_DURATION_MS);
    Ok(format_duration(scaled.max(floor)))
}

/// Divides every range, subquery and offset duration of one PromQL expression by `factor`.
///
/// Errors on text the PromQL lexer rejects, and on a bare number where a duration belongs
/// (`[300]`, `offset 60`): newer Prometheus reads those as seconds, and leaving them unscaled
/// would silently keep production timing.
pub fn scale_expr(expr: &str, factor: u32) -> Result<String> {
    let lexer = promql_parser::parser::lexer(expr)
        .map_err(|error| anyhow::anyhow!("PromQL does not lex: {error}"))?;
    let mut out = String::with_capacity(expr.len());
    let mut copied = 0;
    let mut in_brackets = false;
    // The previous tokens, to see `offset 60` and `offset -60`.
    let mut previous = [None, None];
    for lexeme in lexer.iter() {
        let lexeme = lexeme.map_err(|_| anyhow::anyhow!("PromQL does not lex"))?;
        let id = lexeme.tok_id();
        let span = lexeme.span();
        let after_offset = previous[1] == Some(T_OFFSET)
            || (previous[1] == Some(T_SUB) && previous[0] == Some(T_OFFSET));
        if id == T_NUMBER && (in_brackets || after_offset) {
            bail!(
                "`{}` in `{}` is a bare number where a duration belongs; write it with a unit (e.g. 5m)",
                &expr[span.start()..span.end()],
                expr.trim()
            );
        }
        if id == T_LEFT_BRACKET {
            in_brackets = true;
        } else if id == T_RIGHT_BRACKET {
            in_brackets = false;
        } else if id == T_DURATION {
            let text = &expr[span.start()..span.end()];
            out.push_str(&expr[copied..span.start()]);
            out.push_str(&scale_duration(text, factor)?);
            copied = span.end();
        }
        previous = [previous[1], Some(id)];
    }
    out.push_str(&expr[copied..]);
    Ok(out)
}

/// Reads a Prometheus rule file and returns it with every duration divided by `factor`
/// (see the module documentation for what counts). Factor 1 returns the same rules.
///
/// The output is re-serialized YAML: comments are gone and a header says where it came from.
pub fn scale_rules(yaml: &str, factor: u32) -> Result<String> {
    if factor == 0 {
        bail!("time scale factor must be at least 1");
    }
    let mut file: Value = serde_norway::from_str(yaml).context("rule file: not valid YAML")?;
    let groups = file
        .get_mut("groups")
        .and_then(Value::as_sequence_mut)
        .context("rule file: no `groups:` list")?;
    for (index, group) in groups.iter_mut().enumerate() {
        let group = group
            .as_mapping_mut()
            .with_context(|| format!("rule file: group {index} is not a mapping"))?;
        let group_name = match group.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => format!("#{index}"),
        };
        scale_keys(group, GROUP_DURATION_KEYS, factor)
            .with_context(|| format!("group {group_name}"))?;
        let Some(rules) = group.get_mut("rules").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for (position, rule) in rules.iter_mut().enumerate() {
            let rule = rule
                .as_mapping_mut()
                .with_context(|| format!("group {group_name}: rule {position} is not a mapping"))?;
            let rule_name = ["alert", "record"]
                .iter()
                .find_map(|key| rule.get(*key).and_then(Value::as_str))
                .unwrap_or("?")
                .to_string();
            let what = || format!("group {group_name}, rule {position} ({rule_name})");
            scale_keys(rule, RULE_DURATION_KEYS, factor).with_context(what)?;
            if let Some(Value::String(expr)) = rule.get_mut("expr") {
                *expr = scale_expr(expr, factor).with_context(what)?;
            }
        }
    }
    let body = serde_norway::to_string(&file).context("rule file: cannot write YAML")?;
    Ok(format!(
        "# Generated by the lab (crates/lab/src/timescale.rs): every duration of the source rule\n\
         # file divided by {factor}. Never commit it; deploy/rules/gethrelay.rules.yaml is the source.\n\
         {body}"
    ))
}

/// Scales the string durations under `keys` of one mapping.
fn scale_keys(mapping: &mut Mapping, keys: &[&str], factor: u32) -> Result<()> {
    for key in keys {
        match mapping.get_mut(*key) {
            None => {}
            Some(Value::String(text)) => {
                *text = scale_duration(text, factor).with_context(|| format!("`{key}:`"))?;
            }
            Some(other) => bail!("`{key}:` is {other:?}, not a duration such as 5m"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
