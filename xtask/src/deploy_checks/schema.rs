//! A small structural validator for Kubernetes OpenAPI v3 schemas (CRDs), stricter than the API
//! server in one way: an unknown field is an error here, where the server would silently prune it.
//!
//! Covers what the CRDs in `../shared/reference/k8s-schemas` use: type, properties, required,
//! additionalProperties, items, enum, pattern, min/max length, minimum/maximum, and
//! `x-kubernetes-int-or-string` / `x-kubernetes-preserve-unknown-fields`. `format` is not checked.

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;

/// The `openAPIV3Schema` of a CRD file's served version `version`.
pub fn crd_schema(crd_yaml: &str, version: &str) -> Result<Json> {
    let crd: Json = serde_norway::from_str(crd_yaml).context("CRD: not valid YAML")?;
    let versions = crd["spec"]["versions"]
        .as_array()
        .context("CRD without spec.versions")?;
    for entry in versions {
        if entry["name"] == version {
            return Ok(entry["schema"]["openAPIV3Schema"].clone());
        }
    }
    bail!("CRD has no version {version}")
}

/// Validates `value` against `schema`; returns every problem with its JSON path.
pub fn validate(schema: &Json, value: &Json) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, value, "", &mut errors);
    errors
}

fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn walk(schema: &Json, value: &Json, path: &str, errors: &mut Vec<String>) {
    let shown = if path.is_empty() { "." } else { path };
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(format!(
                "{shown}: want an integer or a string, got {}",
                type_name(value)
            ));
        }
        return;
    }
    if let Some(want) = schema["type"].as_str() {
        let got = type_name(value);
        let fits = got == want || (want == "number" && got == "integer");
        if !(fits || got == "null" && schema["nullable"] == true) {
            errors.push(format!("{shown}: want {want}, got {got}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{shown}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Json::Object(object) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let free_form = schema["x-kubernetes-preserve-unknown-fields"] == true
                || (properties.is_none() && additional.is_null())
                || *additional == Json::Bool(true);
            for (key, child) in object {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = properties.and_then(|properties| properties.get(key)) {
                    walk(child_schema, child, &child_path, errors);
                } else if additional.is_object() {
                    walk(additional, child, &child_path, errors);
                } else if !free_form {
                    errors.push(format!("{child_path}: unknown field"));
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(key) = required.as_str() {
                    if !object.contains_key(key) {
                        errors.push(format!("{shown}: required field {key} missing"));
                    }
                }
            }
        }
        Json::Array(items) if schema["items"].is_object() => {
            for (index, item) in items.iter().enumerate() {
                walk(&schema["items"], item, &format!("{path}[{index}]"), errors);
            }
        }
        Json::String(text) => {
            if let Some(pattern) = schema["pattern"].as_str() {
                match regex::Regex::new(pattern) {
                    Ok(regex) if !regex.is_match(text) => {
                        errors.push(format!("{shown}: {text:?} does not match {pattern}"));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        errors.push(format!("{shown}: schema pattern {pattern}: {error}"))
                    }
                }
            }
            let length = text.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|min| length < min) {
                errors.push(format!("{shown}: shorter than minLength"));
            }
            if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
                errors.push(format!("{shown}: longer than maxLength"));
            }
        }
        Json::Number(number) => {
            let number = number.as_f64().unwrap_or_default();
            if schema["minimum"].as_f64().is_some_and(|min| number < min) {
                errors.push(format!("{shown}: below minimum {}", schema["minimum"]));
            }
            if schema["maximum"].as_f64().is_some_and(|max| number > max) {
                errors.push(format!("{shown}: above maximum {}", schema["maximum"]));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_named_with_their_path() {
        let schema: Json = serde_json::json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "interval": {"type": "string", "pattern": "^[0-9]+s$"},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "list": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "limit": {"type": "integer", "minimum": 0}
                    }
                }
            }
        });
        let good = serde_json::json!({"metadata": {"anything": 1}, "spec": {"interval": "15s", "port": "web", "list": ["a"], "labels": {"x": "y"}, "limit": 3}});
        assert_eq!(validate(&schema, &good), Vec::<String>::new());
        let bad = serde_json::json!({"spec": {"interval": "15", "port": true, "list": ["c"], "labels": {"x": 1}, "limit": -1, "typo": 1}});
        let errors = validate(&schema, &bad).join("\n");
        for want in [
            ".spec.interval: \"15\" does not match",
            ".spec.port: want an integer or a string",
            ".spec.list[0]: \"c\" is not one of",
            ".spec.labels.x: want string",
            ".spec.limit: below minimum",
            ".spec.typo: unknown field",
        ] {
            assert!(errors.contains(want), "{want} missing from:\n{errors}");
        }
        let missing = validate(&schema, &serde_json::json!({}));
        assert_eq!(missing, [".: required field spec missing"]);
    }
}
