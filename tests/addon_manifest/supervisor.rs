//! How the Home Assistant Supervisor judges an add-on, restated for tests: which folders of
//! a repository it takes for add-ons, the manifest keys it checks, the schema grammar, and
//! how it validates the options a user saves (the Supervisor's `apps/options.py`,
//! `apps/validate.py`, `store/data.py`). Only behaviour an add-on author can run into is
//! modelled; `device(...)` options and `!secret` lookups are refused as unsupported here.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Map, Value};

/// What the Supervisor keeps of validated options, and what it only logged.
#[derive(Debug)]
pub struct Validated {
    pub options: Value,
    pub warnings: Vec<String>,
}

/// The options a started add-on sees: the manifest's defaults with the user's saved options
/// laid over them key by key at the top level only (a saved `smtp` replaces the whole map).
pub fn effective_options(defaults: &Value, saved: &Value) -> Value {
    let mut out = defaults.as_object().cloned().unwrap_or_default();
    for (k, v) in saved.as_object().into_iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// Validate `options` against `schema` the way the Supervisor does before it writes
/// `/data/options.json`: unknown keys are dropped with a warning, `null` is a missing
/// required value, and every schema key absent from the options must be an optional
/// (`?`) scalar or a list of optional scalars — a map of the schema is never optional.
pub fn validate_options(schema: &Value, options: &Value) -> Result<Validated, String> {
    let mut warnings = Vec::new();
    let schema = schema
        .as_object()
        .ok_or("the schema must be a map of option names")?;
    let options = options
        .as_object()
        .ok_or("the options must be a map of option names")?;
    let out = validate_map(schema, options, "root", &mut warnings)?;
    Ok(Validated {
        options: Value::Object(out),
        warnings,
    })
}

fn validate_map(
    schema: &Map<String, Value>,
    data: &Map<String, Value>,
    root: &str,
    warnings: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in data {
        let Some(ty) = schema.get(key) else {
            warnings.push(format!(
                "option '{key}' is not in the schema and is dropped"
            ));
            continue;
        };
        out.insert(key.clone(), validate_element(ty, value, key, warnings)?);
    }
    for (key, ty) in schema {
        if out.contains_key(key) {
            continue;
        }
        let decisive = match ty {
            Value::Array(items) if !items.is_empty() => &items[0],
            other => other,
        };
        if !decisive.as_str().is_some_and(|t| t.ends_with('?')) {
            return Err(format!("Missing option '{key}' in {root}"));
        }
    }
    Ok(out)
}

fn validate_element(
    ty: &Value,
    value: &Value,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    match ty {
        Value::Array(items) => {
            let item = items
                .first()
                .ok_or_else(|| format!("Type error for option '{key}'"))?;
            let list = value
                .as_array()
                .ok_or_else(|| format!("Invalid list for option '{key}'"))?;
            list.iter()
                .map(|v| validate_element(item, v, key, warnings))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Value::Object(nested) => {
            let map = value
                .as_object()
                .ok_or_else(|| format!("Invalid dict for option '{key}'"))?;
            validate_map(nested, map, key, warnings).map(Value::Object)
        }
        Value::String(t) => validate_single(t, value, key),
        other => Err(format!("Type error for option '{key}': schema {other}")),
    }
}

/// The schema grammar: a type name, range bounds for `str`/`password`/`int`/`float`, a
/// pattern for `match`, choices for `list`, and a trailing `?` for optional.
fn element_grammar() -> Regex {
    Regex::new(concat!(
        r"^(?:(?P<plain>bool|email|url|port)",
        r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?",
        r"|(?P<text>str|password)(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?",
        r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?",
        r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?",
        r"|match\((?P<pattern>.*)\)",
        r"|list\((?P<choices>.+)\)",
        r")\??$"
    ))
    .unwrap()
}

/// Whether `ty` is a schema leaf the Supervisor accepts.
pub fn is_schema_type(ty: &str) -> bool {
    element_grammar().is_match(ty)
}

fn validate_single(ty: &str, value: &Value, key: &str) -> Result<Value, String> {
    if value.is_null() {
        return Err(format!("Missing required option '{key}'"));
    }
    if python_str(value).starts_with("!secret ") {
        return Err(format!(
            "option '{key}': `!secret` values need Home Assistant's secrets.yaml (not modelled)"
        ));
    }
    let caps = element_grammar()
        .captures(ty)
        .ok_or_else(|| format!("Unknown type '{ty}'"))?;
    let bound = |name: &str| caps.name(name).and_then(|m| m.as_str().parse::<f64>().ok());
    let bad = |what: &str| Err(format!("option '{key}': {value} is not {what}"));
    let name = ty.split(['(', '?']).next().unwrap_or("");
    match name {
        "str" | "password" => {
            // `str(value)` is used as a literal schema, so only text equals itself.
            if !value.is_string() {
                return bad("text");
            }
            // The bounds go to a numeric range check, which text never passes.
            if caps.name("s_min").is_some() || caps.name("s_max").is_some() {
                return bad("accepted: the Supervisor's range check on a bounded str/password compares text with numbers and refuses every value");
            }
            Ok(value.clone())
        }
        "int" => match python_int(value) {
            Some(i) if in_range(i as f64, bound("i_min"), bound("i_max")) => Ok(Value::from(i)),
            Some(_) => bad("in range"),
            None => bad("an integer"),
        },
        "float" => match python_float(value) {
            Some(f) if in_range(f, bound("f_min"), bound("f_max")) => Ok(Value::from(f)),
            Some(_) => bad("in range"),
            None => bad("a number"),
        },
        "bool" => match python_boolean(value) {
            Some(b) => Ok(Value::from(b)),
            None => bad("a boolean"),
        },
        "email" => match value.as_str() {
            Some(s) if looks_like_email(s) => Ok(value.clone()),
            _ => bad("an email address"),
        },
        "url" => match value.as_str() {
            Some(s) if has_scheme_and_host(s) => Ok(value.clone()),
            _ => bad("a URL with scheme and host"),
        },
        "port" => match python_int(value) {
            Some(p) if (1..=65535).contains(&p) => Ok(Value::from(p)),
            _ => bad("a port (1-65535)"),
        },
        "match" => {
            let pattern = caps.name("pattern").unwrap().as_str();
            // Python's re.match anchors at the start only.
            let re = Regex::new(&format!("^(?:{pattern})"))
                .map_err(|e| format!("option '{key}': pattern {pattern:?}: {e}"))?;
            let text = python_str(value);
            if re.is_match(&text) {
                Ok(Value::from(text))
            } else {
                bad(&format!("matched by {pattern}"))
            }
        }
        "list" => {
            let text = python_str(value);
            let choices = caps.name("choices").unwrap().as_str();
            if choices.split('|').any(|c| c == text) {
                Ok(Value::from(text))
            } else {
                bad(&format!("one of {choices}"))
            }
        }
        _ => Err(format!(
            "option '{key}': type {ty} is not modelled by this test"
        )),
    }
}

fn in_range(x: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m)
}

/// Python's `str(value)` for JSON values.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:?}", n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Python's `int(value)`: booleans count, floats truncate, text must be a whole number.
fn python_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(*b as i64),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => s.trim().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// Python's `float(value)`.
fn python_float(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(*b as i64 as f64),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// voluptuous' `Boolean()`: yes/no words for text, truthiness for anything else.
fn python_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::String(s) => match s.to_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "enable" => Some(true),
            "0" | "false" | "no" | "off" | "disable" => Some(false),
            _ => None,
        },
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::Array(a) => Some(!a.is_empty()),
        Value::Object(o) => Some(!o.is_empty()),
        Value::Null => Some(false),
    }
}

/// An address voluptuous' `Email()` accepts: a dot-atom local part, `@`, and a domain of
/// letter/digit/hyphen labels ending in a label of two or more characters.
fn looks_like_email(s: &str) -> bool {
    let Some((user, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let atom = Regex::new(r"^[-!#$%&'*+/=?^`{}|~\w]+(\.[-!#$%&'*+/=?^`{}|~\w]+)*$").unwrap();
    let host =
        Regex::new(r"(?i)^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,}|[a-z0-9-]{2,})\.?$")
            .unwrap();
    atom.is_match(user) && host.is_match(domain)
}

/// What Python's `urlparse` needs for voluptuous' `Url()`: a scheme and a network location.
fn has_scheme_and_host(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*$")
        .unwrap()
        .is_match(scheme);
    let netloc = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    scheme_ok && !netloc.is_empty()
}

/// Problems the Supervisor has with a manifest (`config.yaml`) it reads from a repository:
/// errors make it skip the add-on; warnings it logs ("please report to the maintainer").
pub fn check_manifest(m: &Value) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    for key in ["name", "slug", "description"] {
        if text(key).is_none() {
            errors.push(format!("{key}: required text"));
        }
    }
    if !m
        .get("version")
        .is_some_and(|v| v.is_string() || v.is_number())
    {
        errors.push("version: required".into());
    }
    if !text("slug").is_some_and(|s| Regex::new(r"^[-_.A-Za-z0-9]+$").unwrap().is_match(s)) {
        errors.push("slug: letters, digits, '-', '_' and '.' only".into());
    }
    const ARCHES: [&str; 5] = ["aarch64", "amd64", "armhf", "armv7", "i386"];
    match m.get("arch").and_then(Value::as_array) {
        Some(list) => {
            for a in list {
                match a.as_str() {
                    Some("aarch64" | "amd64") => {}
                    Some(old) if ARCHES.contains(&old) => {
                        warnings.push(format!("arch: {old} is deprecated"))
                    }
                    _ => errors.push(format!("arch: {a} is not an architecture")),
                }
            }
        }
        None => errors.push("arch: required list".into()),
    }
    if let Some(url) = m.get("url") {
        if !url.as_str().is_some_and(has_scheme_and_host) {
            errors.push(format!("url: {url} is not a URL"));
        }
    }
    let one_of = |key: &str, allowed: &[&str], errors: &mut Vec<String>| {
        if let Some(v) = m.get(key) {
            if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                errors.push(format!("{key}: {v} is not one of {allowed:?}"));
            }
        }
    };
    one_of(
        "startup",
        &["initialize", "system", "services", "application", "once"],
        &mut errors,
    );
    one_of("boot", &["auto", "manual", "manual_only"], &mut errors);
    one_of(
        "stage",
        &["stable", "experimental", "deprecated"],
        &mut errors,
    );
    if let Some(v) = m.get("init") {
        if !v.is_boolean() {
            errors.push("init: must be a boolean".into());
        }
    }
    if let Some(w) = m.get("watchdog") {
        let re =
            Regex::new(r"^(?:https?|\[PROTO:\w+\]|tcp)://\[HOST\]:(\[PORT:\d+\]|\d+).*$").unwrap();
        if !w.as_str().is_some_and(|s| re.is_match(s)) {
            errors.push(format!("watchdog: {w} is not a watchdog URL"));
        }
    }
    let service = Regex::new(r"^(mqtt|mysql):(provide|want|need)$").unwrap();
    for s in m
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !s.as_str().is_some_and(|s| service.is_match(s)) {
            errors.push(format!("services: {s} is not SERVICE:RIGHTS"));
        }
    }
    let volume = Regex::new(
        r"^(data|config|ssl|addons|backup|share|media|homeassistant_config|all_addon_configs|addon_config)(?::(rw|ro))?$",
    )
    .unwrap();
    for v in m.get("map").and_then(Value::as_array).into_iter().flatten() {
        let ok = match v {
            Value::String(s) => volume.is_match(s),
            Value::Object(o) => o.contains_key("type"),
            _ => false,
        };
        if !ok {
            warnings.push(format!("map: {v} is skipped as invalid"));
        }
    }
    if let Some(image) = m.get("image") {
        // No tag: the Supervisor appends `:<version>` itself; `{arch}` may stand in the name.
        let re = Regex::new(r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)$").unwrap();
        if !image.as_str().is_some_and(|s| re.is_match(s)) {
            errors.push(format!(
                "image: {image} is not REGISTRY/OWNER/NAME without a tag"
            ));
        }
    }
    if let Some(o) = m.get("options") {
        if !o.is_object() {
            errors.push("options: must be a map".into());
        }
    }
    if let Some(schema) = m.get("schema") {
        match schema {
            Value::Object(map) => {
                for (k, v) in map {
                    check_schema_element(k, v, &mut errors);
                }
            }
            Value::Bool(false) => {}
            other => errors.push(format!("schema: {other} is neither a map nor false")),
        }
    }
    (errors, warnings)
}

fn check_schema_element(path: &str, v: &Value, errors: &mut Vec<String>) {
    match v {
        Value::String(t) if is_schema_type(t) => {}
        Value::String(t) => errors.push(format!("schema {path}: unknown type {t:?}")),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) => {
                        errors.push(format!("schema {path}: a list may not hold a list"))
                    }
                    other => check_schema_element(&format!("{path}[]"), other, errors),
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                check_schema_element(&format!("{path}.{k}"), v, errors);
            }
        }
        other => errors.push(format!("schema {path}: {other} is not a type")),
    }
}

/// The manifests a repository offers: every `config.json|yaml|yml` below the repository
/// root whose path has no part starting with `.` and none named `rootfs`. (A clone has no
/// `target/`; build output is skipped here for the same reason.)
pub fn find_addons(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, repo: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "rootfs" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, repo, out);
            } else if ["config.json", "config.yaml", "config.yml"].contains(&name.as_str()) {
                out.push(path.strip_prefix(repo).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(repo, repo, &mut out);
    out.sort();
    out
}

/// The Dockerfile the Supervisor builds for `arch` when the manifest has no `image`:
/// `Dockerfile.<arch>` if present, else `Dockerfile`, inside the add-on folder, which is the
/// whole build context.
pub fn dockerfile_for(addon_dir: &Path, arch: &str) -> PathBuf {
    let specific = addon_dir.join(format!("Dockerfile.{arch}"));
    if specific.is_file() {
        specific
    } else {
        addon_dir.join("Dockerfile")
    }
}
