//! Where each effective configuration value came from, for `snapmail check`.
//!
//! The loaded [`Config`] is serialized (secrets serialize as `[redacted]`), flattened to
//! dotted key paths, and each key is traced back to the layer that set it: an environment
//! variable, a secret file named by a sibling `*_file` key, the YAML/JSON file, or the
//! built-in default. The layers are read again here rather than recorded while loading, so
//! loading itself stays a single pass through the `config` crate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use config::{File, FileFormat};
use serde_json::Value;

use super::{Config, ConfigError};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable (its name).
    Env(String),
    /// A secret file named by the sibling `*_file` key.
    SecretFile(PathBuf),
    /// Not set anywhere: the built-in default.
    Default,
    /// Not set, computed from other keys (e.g. `smtp.security` from `smtp.port`).
    Derived(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(v) => write!(f, "env {v}"),
            Origin::SecretFile(p) => write!(f, "secret file {}", p.display()),
            Origin::Default => f.write_str("default"),
            Origin::Derived(why) => write!(f, "default, {why}"),
        }
    }
}

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Dotted key path, e.g. `smtp.port`.
    pub key: String,
    /// The value as text; secrets are `[redacted]`.
    pub value: String,
    pub origin: Origin,
}

/// Every effective setting of `config` (loaded from `path` and `env`) with its origin.
/// `env: None` reads the process environment, as [`super::load`] does.
pub fn describe(
    config: &Config,
    path: Option<&Path>,
    env: Option<&HashMap<String, String>>,
) -> Result<Vec<Entry>, ConfigError> {
    let effective = serde_json::to_value(config)
        .map_err(|e| ConfigError::Invalid(format!("cannot list the configuration: {e}")))?;
    let mut values = BTreeMap::new();
    flatten("", &effective, &mut values);

    let mut from_file = BTreeMap::new();
    if let Some(path) = path {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => FileFormat::Json,
            _ => FileFormat::Yaml,
        };
        let raw: Value = config::Config::builder()
            .add_source(File::from(path).format(format))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        flatten("", &raw, &mut from_file);
    }

    let process_env;
    let env = match env {
        Some(e) => e,
        None => {
            process_env = std::env::vars().collect::<HashMap<_, _>>();
            &process_env
        }
    };
    let from_env: HashMap<String, String> = env
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix("SNAPMAIL__")?;
            let key = rest.split("__").collect::<Vec<_>>().join(".");
            Some((key.to_ascii_lowercase(), name.clone()))
        })
        .collect();

    let mut out = Vec::with_capacity(values.len());
    for (key, value) in &values {
        let secret_file = values
            .get(&format!("{key}_file"))
            .filter(|v| !v.is_empty() && *v != "(unset)")
            .map(PathBuf::from);
        let origin = if let Some(var) = from_env.get(&key.to_ascii_lowercase()) {
            Origin::Env(var.clone())
        } else if let Some(file) = secret_file {
            Origin::SecretFile(file)
        } else if from_file.contains_key(key) {
            Origin::File(path.map(Path::to_path_buf).unwrap_or_default())
        } else if key == "smtp.security" {
            Origin::Derived("from smtp.port")
        } else if key == "smtp.from" || key == "smtp.to" {
            Origin::Derived("smtp.username")
        } else {
            Origin::Default
        };
        let shown = match (key.as_str(), &origin) {
            ("smtp.security", Origin::Derived(_)) => config
                .smtp
                .as_ref()
                .map(|s| s.security().name().to_owned())
                .unwrap_or_else(|| value.clone()),
            ("smtp.from", Origin::Derived(_)) => config
                .smtp
                .as_ref()
                .map(|s| s.from_address().to_owned())
                .unwrap_or_else(|| value.clone()),
            ("smtp.to", Origin::Derived(_)) => config
                .smtp
                .as_ref()
                .map(|s| s.recipients().join(", "))
                .unwrap_or_else(|| value.clone()),
            // A URL may carry a login (`http://user:pass@frigate:5000`).
            _ if value.contains("://") && value.contains('@') => crate::errors::redact_url(value),
            _ => value.clone(),
        };
        out.push(Entry {
            key: key.clone(),
            value: shown,
            origin,
        });
    }
    Ok(out)
}

/// `{"smtp": {"port": 587}}` → `smtp.port = 587`. Lists stay one value.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Object(_) => {
            out.insert(prefix.to_owned(), "{}".into());
        }
        Value::Null => {
            out.insert(prefix.to_owned(), "(unset)".into());
        }
        Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_owned(), format!("[{}]", parts.join(", ")));
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn origins_and_redaction() {
        let mut secret = tempfile::NamedTempFile::new().unwrap();
        writeln!(secret, "mqtt-pass-xyz").unwrap();
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        write!(
            f,
            "mqtt:\n  url: mqtt://127.0.0.1:1883\n  username: cam\n  password_file: {}\nsmtp:\n  username: a@b.c\n  password: \"abcd efgh ijkl mnop\"\n",
            secret.path().display()
        )
        .unwrap();
        let env: HashMap<String, String> =
            [("SNAPMAIL__SMTP__PORT".to_string(), "465".to_string())].into();
        let cfg = super::super::load_from(Some(f.path()), Some(env.clone())).unwrap();
        let entries = describe(&cfg, Some(f.path()), Some(&env)).unwrap();
        let get = |k: &str| entries.iter().find(|e| e.key == k).unwrap().clone();
        assert_eq!(get("smtp.port").value, "465");
        assert_eq!(
            get("smtp.port").origin,
            Origin::Env("SNAPMAIL__SMTP__PORT".into())
        );
        assert_eq!(get("smtp.security").value, "tls");
        assert!(matches!(get("smtp.security").origin, Origin::Derived(_)));
        assert_eq!(get("smtp.password").value, "[redacted]");
        assert!(matches!(get("smtp.password").origin, Origin::File(_)));
        assert_eq!(get("mqtt.password").value, "[redacted]");
        assert_eq!(
            get("mqtt.password").origin,
            Origin::SecretFile(secret.path().to_path_buf())
        );
        assert_eq!(get("rate_limit.cooldown").value, "1m");
        assert_eq!(get("rate_limit.cooldown").origin, Origin::Default);
        let f2 = super::super::load_from(
            None,
            Some(
                [(
                    "SNAPMAIL__FRIGATE__URL".to_string(),
                    "http://admin:pw123@frigate:5000".to_string(),
                )]
                .into(),
            ),
        )
        .unwrap();
        let e2 = describe(
            &f2,
            None,
            Some(&[("SNAPMAIL__FRIGATE__URL".to_string(), String::new())].into()),
        )
        .unwrap();
        let url = e2.iter().find(|e| e.key == "frigate.url").unwrap();
        assert_eq!(url.value, "http://frigate:5000/");
        let all = format!("{entries:?}");
        assert!(
            !all.contains("abcd") && !all.contains("mqtt-pass-xyz"),
            "{all}"
        );
    }
}
