//! The Home Assistant add-on linter's rules, applied to a manifest from the rule list in
//! `tests/addon-linter-rules.json` (keys, types, defaults that must be left out, allowed
//! values) plus the linter's rules across several keys, named by id in that file.

use regex::Regex;
use serde_json::Value;

pub fn rules() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/addon-linter-rules.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every error the linter would report for manifest `m`.
pub fn lint(m: &Value) -> Vec<String> {
    let rules = rules();
    let mut errors = Vec::new();
    let Some(config) = m.as_object() else {
        return vec!["the manifest is not a map".into()];
    };
    for key in rules["required"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        if !config.contains_key(key) {
            errors.push(format!("'{key}' is a required property"));
        }
    }
    let keys = rules["keys"].as_object().unwrap();
    for (key, value) in config {
        let Some(rule) = keys.get(key) else {
            errors.push(format!(
                "Additional properties are not allowed ('{key}' was unexpected)"
            ));
            continue;
        };
        if rule.get("default") == Some(value) {
            errors.push(format!(
                "'{key}' should be removed, it uses a default value"
            ));
        }
        check_value(key, value, rule, &mut errors);
    }
    let checks = rules["checks"].as_object().unwrap();
    for (id, message) in checks {
        let message = message.as_str().unwrap();
        if cross_check(id, m) {
            errors.push(message.to_owned());
        }
    }
    errors
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_value(key: &str, value: &Value, rule: &Value, errors: &mut Vec<String>) {
    let types: Vec<&str> = rule["type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    if !types.contains(&json_type(value)) {
        errors.push(format!("'{key}': {value} is not of type {types:?}"));
        return;
    }
    if let Some(allowed) = rule.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("'{key}': {value} is not one of {allowed:?}"));
        }
    }
    if let Some(n) = value.as_i64() {
        let min = rule.get("min").and_then(Value::as_i64);
        let max = rule.get("max").and_then(Value::as_i64);
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            errors.push(format!("'{key}': {n} is out of range"));
        }
    }
    let Some(items) = value.as_array() else {
        return;
    };
    if let Some(allowed) = rule.get("items_enum").and_then(Value::as_array) {
        for item in items {
            if !allowed.contains(item) {
                errors.push(format!("'{key}': {item} is not one of {allowed:?}"));
            }
        }
    }
    if let Some(t) = rule.get("items_type").and_then(Value::as_str) {
        for item in items {
            if json_type(item) != t {
                errors.push(format!("'{key}': {item} is not of type '{t}'"));
            }
        }
    }
    let pattern = rule
        .get("items_pattern")
        .and_then(Value::as_str)
        .map(|p| Regex::new(p).unwrap());
    if let Some(entries) = rule.get("map_entries").and_then(Value::as_array) {
        // `map` is exactly one of: a list of "TYPE[:rw|:ro]" strings, or a list of
        // {type, read_only, path} maps. An empty list is both, which is an error too.
        let pattern = pattern.as_ref().unwrap();
        let as_strings = items
            .iter()
            .all(|i| i.as_str().is_some_and(|s| pattern.is_match(s)));
        let as_maps = items.iter().all(|i| {
            i.as_object().is_some_and(|o| {
                o.get("type").is_some_and(|t| entries.contains(t))
                    && o.keys()
                        .all(|k| ["type", "read_only", "path"].contains(&k.as_str()))
            })
        });
        if as_strings == as_maps {
            errors.push(format!(
                "'{key}': {value} must be all TYPE[:rw|:ro] strings or all {{type, read_only, path}} maps"
            ));
        }
    } else if let Some(pattern) = pattern {
        for item in items {
            if !item.as_str().is_some_and(|s| pattern.is_match(s)) {
                errors.push(format!("'{key}': {item} does not match {pattern}"));
            }
        }
    }
}

/// The linter's rules over several keys; true when the manifest breaks rule `id`.
fn cross_check(id: &str, m: &Value) -> bool {
    let truthy = |k: &str| match m.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Bool(true)) => true,
    };
    match id {
        "watchdog-obsolete" => truthy("watchdog"),
        "ingress-without-webui" => truthy("ingress") && truthy("webui"),
        "ingress-port-not-random" => {
            truthy("ingress")
                && !truthy("host_network")
                && m.get("ingress_port").and_then(Value::as_i64) == Some(0)
        }
        "full-access-alone" => {
            truthy("full_access")
                && ["devices", "gpio", "uart", "usb"]
                    .iter()
                    .any(|k| m.get(*k).is_some())
        }
        "auto-uart-deprecated" => m.get("auto_uart").is_some(),
        "devices-paths-only" => m
            .get("devices")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|l| l.as_str().is_some_and(|s| s.contains(':')))),
        "tmpfs-boolean" => m.get("tmpfs").is_some_and(|t| !t.is_boolean()),
        "cold-backup-no-hooks" => {
            m.get("backup").and_then(Value::as_str) == Some("cold")
                && (m.get("backup_pre").is_some() || m.get("backup_post").is_some())
        }
        other => panic!("tests/addon-linter-rules.json names the check {other:?}, which tests/addon_manifest/linter.rs does not implement"),
    }
}
