//! Reading the configuration: file + environment through the `config` crate, then secret
//! files, then cross-field validation. Errors always name the key path and what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};

use super::{AuthMethod, Config, Security};
use crate::secret::Secret;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: not found; check --config / SNAPMAIL_CONFIG")]
    NotFound { path: PathBuf },
    #[error("config: {0}")]
    Invalid(String),
    #[error("{key}: cannot read secret file {path}: {source}; check the path and that snapmail may read it")]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// More than one problem: every one is listed, so one run of `check` shows them all.
    #[error("{} problems in the configuration:{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

fn list(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl ConfigError {
    /// A value that cannot be used; `msg` starts with the key path and ends with the fix.
    pub fn invalid(msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid(msg.into())
    }

    /// `problems` as one error: itself when there is one, [`ConfigError::Several`] otherwise.
    pub fn from_problems(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }

    /// The single problems this error stands for.
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(list) => list.iter().flat_map(ConfigError::problems).collect(),
            one => vec![one],
        }
    }

    /// A secret file that does not exist (yet): the configuration around it may be fine.
    pub fn is_missing_secret_file(&self) -> bool {
        matches!(self, ConfigError::SecretFile { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A configuration that could be read, and what is wrong with it (nothing, when `problems`
/// is empty). Problems do not stop loading, so that every one of them can be shown at once.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub problems: Vec<ConfigError>,
}

impl Loaded {
    /// The configuration, or every problem it has.
    pub fn into_result(self) -> Result<Config, ConfigError> {
        ConfigError::from_problems(self.problems)?;
        Ok(self.config)
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::invalid(msg)
}

/// Load from `path` (if any) and the process environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_from(path, None)
}

/// Load from `path` and `env` (`None`: the process environment). Tests pass a map.
pub fn load_from(
    path: Option<&Path>,
    env: Option<HashMap<String, String>>,
) -> Result<Config, ConfigError> {
    load_all(path, env)?.into_result()
}

/// Like [`load_from`], but a configuration with problems is returned with its problems. An
/// error here means nothing usable could be read (no file, not YAML, a value of the wrong
/// type).
pub fn load_all(
    path: Option<&Path>,
    env: Option<HashMap<String, String>>,
) -> Result<Loaded, ConfigError> {
    build(path, None, env)
}

/// Load as a Home Assistant add-on: the add-on's `options.json` (written by the Supervisor
/// from the options UI) over the YAML file its `config_file` option names (or `path`), with
/// the state kept under `/data`, and the environment on top.
pub fn load_addon(
    path: Option<&Path>,
    options: &Path,
    env: Option<HashMap<String, String>>,
) -> Result<Config, ConfigError> {
    load_addon_all(path, options, env)?.into_result()
}

/// [`load_addon`] with the problems beside the configuration, like [`load_all`].
pub fn load_addon_all(
    path: Option<&Path>,
    options: &Path,
    env: Option<HashMap<String, String>>,
) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(options).map_err(|e| {
        invalid(format!(
            "add-on options {}: {e}; restart the add-on after saving its options",
            options.display()
        ))
    })?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "add-on options {}: not JSON: {e}",
            options.display()
        ))
    })?;
    // `config_file` belongs to the add-on, not to the configuration itself.
    let config_file = json
        .as_object_mut()
        .and_then(|o| o.remove("config_file"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|s| !s.trim().is_empty());
    let file = path.map(Path::to_owned).or(config_file.map(PathBuf::from));
    build(file.as_deref(), Some(json), env)
}

fn build(
    path: Option<&Path>,
    addon_options: Option<serde_json::Value>,
    env: Option<HashMap<String, String>>,
) -> Result<Loaded, ConfigError> {
    let mut builder = config::Config::builder();
    if addon_options.is_some() {
        // Under Home Assistant only /data survives restarts and updates.
        builder = builder
            .set_default("outbox.dir", "/data/outbox")
            .and_then(|b| b.set_default("outbox.preview_dir", "/data/preview"))
            .map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(path) = path {
        if !path.exists() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => FileFormat::Json,
            _ => FileFormat::Yaml,
        };
        builder = builder.add_source(File::from(path).format(format));
    }
    if let Some(options) = addon_options {
        builder = builder.add_source(File::from_str(&options.to_string(), FileFormat::Json));
    }
    // `SNAPMAIL__SMTP__PASSWORD` → `smtp.password`. No `try_parsing`: it would turn a
    // password such as "0123" into the number 123. Typed fields parse strings themselves.
    builder = builder.add_source(
        Environment::with_prefix("SNAPMAIL")
            .prefix_separator("__")
            .separator("__")
            .source(env),
    );
    let raw = builder.build().map_err(|e| invalid(tidy(e.to_string())))?;
    let mut cfg: Config = raw
        .try_deserialize()
        .map_err(|e| invalid(tidy(e.to_string())))?;
    let mut problems = Vec::new();
    resolve_secrets(&mut cfg, &mut problems);
    validate(&cfg, &mut problems);
    Ok(Loaded {
        config: cfg,
        problems,
    })
}

/// Rewrite the `config` crate's "... for key `smtp.port` in ..." into "smtp.port: ...".
fn tidy(msg: String) -> String {
    if let Some(start) = msg.find(" for key `") {
        let rest = &msg[start + " for key `".len()..];
        if let Some(end) = rest.find('`') {
            let key = &rest[..end];
            let what = &msg[..start];
            let origin = rest[end + 1..].trim();
            let origin = origin.strip_prefix("in ").unwrap_or(origin);
            return if origin.is_empty() {
                format!("{key}: {what}")
            } else {
                format!("{key}: {what} (from {origin})")
            };
        }
    }
    msg
}

/// Fill `value` from `file`; an empty value counts as unset.
fn secret_from_file(
    key: &str,
    value: &mut Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if value.as_ref().is_some_and(Secret::is_empty) {
        *value = None;
    }
    if let Some(path) = file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        if value.is_some() {
            return Err(invalid(format!(
                "{key} and {key}_file are both set; keep one of them"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
            key: format!("{key}_file"),
            path: path.clone(),
            source,
        })?;
        // Secret files usually end with a newline; nothing else is trimmed here.
        *value = Some(Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    Ok(())
}

/// Whether `file` names a secret file (which then stands for the secret, readable or not).
fn names_file(file: &Option<PathBuf>) -> bool {
    file.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
}

/// Fill every `password` from its `password_file`, and turn empty strings into "unset". A
/// file that cannot be read is a problem, not the end: the rest is still checked.
fn resolve_secrets(cfg: &mut Config, problems: &mut Vec<ConfigError>) {
    let mut keep = |r: Result<(), ConfigError>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };
    keep(secret_from_file(
        "mqtt.password",
        &mut cfg.mqtt.password,
        &cfg.mqtt.password_file,
    ));
    keep(secret_from_file(
        "frigate.password",
        &mut cfg.frigate.password,
        &cfg.frigate.password_file,
    ));
    if cfg.frigate.username.as_deref() == Some("") {
        cfg.frigate.username = None;
    }
    let found = std::cell::RefCell::new(Vec::new());
    let sources = super::sources::resolve_secrets(&mut cfg.sources, |key, value, file| {
        if let Err(e) = secret_from_file(key, value, file) {
            found.borrow_mut().push(e);
        }
        Ok(())
    });
    keep(sources);
    found.into_inner().into_iter().for_each(|e| keep(Err(e)));
    if cfg.mqtt.username.as_deref() == Some("") {
        cfg.mqtt.username = None;
    }
    if cfg.mqtt.url.as_deref() == Some("") {
        cfg.mqtt.url = None;
    }
    unset_if_empty(&mut cfg.mqtt.ca_file);
    if let Some(smtp) = cfg.smtp.as_mut() {
        keep(secret_from_file(
            "smtp.password",
            &mut smtp.password,
            &smtp.password_file,
        ));
        let oauth = &mut smtp.oauth2;
        keep(secret_from_file(
            "smtp.oauth2.client_secret",
            &mut oauth.client_secret,
            &oauth.client_secret_file,
        ));
        keep(secret_from_file(
            "smtp.oauth2.refresh_token",
            &mut oauth.refresh_token,
            &oauth.refresh_token_file,
        ));
        if smtp.from.as_deref() == Some("") {
            smtp.from = None;
        }
        unset_if_empty(&mut smtp.ca_file);
    }
}

/// An empty path (what a form such as the add-on's options leaves) means the key is unset.
fn unset_if_empty(path: &mut Option<PathBuf>) {
    if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        *path = None;
    }
}

/// The checks that need nothing but the configuration itself, every one of them: what only
/// a stage can judge (a broker URL, a mailbox, a window a camera names) is checked when the
/// [`crate::plan::Plan`] resolves each stage's settings. A secret whose file could not be
/// read is not reported again as unset.
fn validate(cfg: &Config, problems: &mut Vec<ConfigError>) {
    let mut fail = |msg: String| problems.push(invalid(msg));
    if cfg.mqtt.qos > 1 {
        fail(format!(
            "mqtt.qos: {} is not allowed; use 0 or 1",
            cfg.mqtt.qos
        ));
    }
    if cfg.mqtt.client_id.trim().is_empty() {
        fail("mqtt.client_id: must not be empty".into());
    }
    if let Some(smtp) = &cfg.smtp {
        if smtp.host.trim().is_empty() {
            fail("smtp.host: must not be empty; Gmail is smtp.gmail.com".into());
        }
        if smtp.username.trim().is_empty() {
            fail("smtp.username: not set; use your full Gmail address, e.g. you@gmail.com".into());
        }
        if smtp.auth == AuthMethod::Oauth2 {
            if let Err(e) = smtp.oauth2.validate() {
                fail(e);
            }
        } else if smtp.password.is_none() && !names_file(&smtp.password_file) {
            fail(
                "smtp.password: not set; put your Gmail app password in smtp.password, \
                 smtp.password_file or SNAPMAIL__SMTP__PASSWORD"
                    .into(),
            );
        } else if smtp.password.is_some() && super::is_gmail(&smtp.host) {
            if let Some(wrong) = smtp.app_password_shape().problem() {
                fail(format!("smtp.password: {wrong}"));
            }
        }
        if smtp.max_connections == 0 {
            fail("smtp.max_connections: must be at least 1".into());
        }
        if smtp.security() == Security::Starttls && smtp.port.0 == 465 {
            tracing::warn!(
                "smtp.security is starttls but smtp.port is 465, which speaks TLS from the first byte; \
                 use security: tls (or port 587)"
            );
        }
        if smtp.security() == Security::Tls && smtp.port.0 == 587 {
            tracing::warn!(
                "smtp.security is tls but smtp.port is 587, which expects STARTTLS; use security: starttls (or port 465)"
            );
        }
    }
    if !(1..=100).contains(&cfg.snapshot.jpeg_quality) {
        fail(format!(
            "snapshot.jpeg_quality: {} is out of range; use 1 to 100 (80 is a good default)",
            cfg.snapshot.jpeg_quality
        ));
    }
    if cfg.snapshot.max_width == 0 || cfg.snapshot.max_height == 0 {
        fail("snapshot.max_width / snapshot.max_height: must be at least 1".into());
    }
    if cfg.frigate.username.is_some()
        && cfg.frigate.password.is_none()
        && !names_file(&cfg.frigate.password_file)
    {
        fail(
            "frigate.password: not set while frigate.username is; set frigate.password or \
             frigate.password_file (or remove frigate.username for port 5000)"
                .into(),
        );
    }
    if cfg.frigate.topic_prefix.trim().is_empty() {
        fail("frigate.topic_prefix: must not be empty (Frigate's default is frigate)".into());
    }
    if let Err(e) = super::sources::validate(&cfg.sources) {
        problems.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn yaml(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const FULL: &str = r#"
mqtt:
  url: mqtt://127.0.0.1:1883
  username: ""
  password: ""
  client_id: snapmail
smtp:
  host: smtp.gmail.com
  port: 587
  security: starttls
  username: you@gmail.com
  password: "abcd efgh ijkl mnop"
  from: "Cameras <you@gmail.com>"
  to: [you@gmail.com]
  ca_file: ""
frigate:
  url: http://frigate:5000
  topic_prefix: frigate
snapshot:
  max_width: 1280
  max_height: 1280
  jpeg_quality: 80
rate_limit:
  cooldown: 60s
cameras:
  driveway:
    cooldown: 10m
"#;

    #[test]
    fn the_documented_example_loads() {
        let f = yaml(FULL);
        let cfg = load_from(Some(f.path()), env(&[])).unwrap();
        let smtp = cfg.smtp.as_ref().unwrap();
        assert_eq!(smtp.app_password().expose(), "abcdefghijklmnop");
        assert_eq!(smtp.security(), Security::Starttls);
        assert_eq!(cfg.mqtt.username, None);
        assert_eq!(cfg.mqtt.password, None);
        assert_eq!(cfg.cooldown_for("driveway"), Duration::from_secs(600));
        assert_eq!(cfg.cooldown_for("garden"), Duration::from_secs(60));
        assert_eq!(smtp.ca_file, None);
    }

    #[test]
    fn environment_overrides_file() {
        let f = yaml(FULL);
        let cfg = load_from(
            Some(f.path()),
            env(&[
                ("SNAPMAIL__SMTP__PASSWORD", "qrst uvwx yzab cdef"),
                ("SNAPMAIL__SMTP__PORT", "465"),
                ("SNAPMAIL__SMTP__SECURITY", "tls"),
                ("SNAPMAIL__SMTP__TO", "a@example.com, b@example.com"),
            ]),
        )
        .unwrap();
        let smtp = cfg.smtp.unwrap();
        assert_eq!(smtp.app_password().expose(), "qrstuvwxyzabcdef");
        assert_eq!(smtp.port, crate::config::Port(465));
        assert_eq!(smtp.recipients(), vec!["a@example.com", "b@example.com"]);
    }

    #[test]
    fn port_465_defaults_to_implicit_tls() {
        let f = yaml("smtp:\n  port: 465\n  username: a@b.c\n  password: abcdefghijklmnop\n");
        let cfg = load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(cfg.smtp.unwrap().security(), Security::Tls);
    }

    #[test]
    fn secrets_from_files() {
        let mut secret = tempfile::NamedTempFile::new().unwrap();
        writeln!(secret, "abcd efgh ijkl mnop").unwrap();
        let f = yaml(&format!(
            "smtp:\n  username: a@b.c\n  password_file: {}\n",
            secret.path().display()
        ));
        let cfg = load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(
            cfg.smtp.unwrap().app_password().expose(),
            "abcdefghijklmnop"
        );
    }

    fn error_of(text: &str, vars: &[(&str, &str)]) -> String {
        let f = yaml(text);
        load_from(Some(f.path()), env(vars))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = error_of(
            "smtp:\n  port: abc\n  username: a@b.c\n  password: abcdefghijklmnop\n",
            &[],
        );
        assert!(e.contains("smtp.port: \"abc\" is not a port number"), "{e}");
        let e = error_of(
            "smtp:\n  username: a@b.c\n  password: abcdefghijklmnop\n",
            &[("SNAPMAIL__SMTP__PORT", "abc")],
        );
        assert!(e.contains("smtp.port: \"abc\" is not a port number"), "{e}");
        let e = error_of("smtp:\n  prot: 587\n", &[]);
        assert!(
            e.contains("unknown field `prot`") && e.contains("smtp"),
            "{e}"
        );
        let e = error_of("rate_limit:\n  cooldown: soon\n", &[]);
        assert!(
            e.contains("rate_limit.cooldown: \"soon\" is not a duration"),
            "{e}"
        );
        let e = error_of("smtp:\n  username: a@b.c\n", &[]);
        assert!(e.contains("smtp.password: not set"), "{e}");
        let e = error_of(
            "smtp:\n  username: a@b.c\n  password: abcdefghijklmnop\n  security: ssl\n",
            &[],
        );
        assert!(e.contains("smtp.security") && e.contains("starttls"), "{e}");
        let e = error_of("snapshot:\n  jpeg_quality: 0\n", &[]);
        assert!(e.contains("snapshot.jpeg_quality"), "{e}");
        let e = error_of("cameras:\n  driveway:\n    cooldwn: 1m\n", &[]);
        assert!(e.contains("cooldwn"), "{e}");
    }

    #[test]
    fn no_file_means_embedded_defaults() {
        let cfg = load_from(None, env(&[])).unwrap();
        assert!(cfg.smtp.is_none());
        assert!(cfg.mqtt.url.is_none());
        assert_eq!(cfg.frigate.topic_prefix, "frigate");
    }
}
