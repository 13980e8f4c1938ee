//! The Home Assistant add-on manifest and the Docker files, checked against the project's
//! real values: option types follow the Supervisor's schema rules, the add-on folder's copy
//! is identical, the default options load into a valid configuration, and the Dockerfile's
//! binary path, user, health check and port match what the program does.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    config::Config::builder()
        .add_source(config::File::from(root().join(path)).format(config::FileFormat::Yaml))
        .build()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .try_deserialize::<Value>()
        .unwrap()
}

/// Whether `v` is valid for a Supervisor schema type (`str`, `int(1,100)`, `list(a|b)`, …).
fn valid(ty: &str, v: &Value) -> Result<(), String> {
    let ty = ty.trim_end_matches('?');
    let (base, args) = match ty.find('(') {
        Some(i) => (&ty[..i], Some(&ty[i + 1..ty.len() - 1])),
        None => (ty, None),
    };
    let range = |args: Option<&str>| -> (Option<f64>, Option<f64>) {
        let Some(a) = args else { return (None, None) };
        let (lo, hi) = a.split_once(',').unwrap_or((a, ""));
        (lo.trim().parse().ok(), hi.trim().parse().ok())
    };
    let in_range = |x: f64, (lo, hi): (Option<f64>, Option<f64>)| {
        lo.is_none_or(|l| x >= l) && hi.is_none_or(|h| x <= h)
    };
    let ok = match base {
        "str" | "password" => v
            .as_str()
            .is_some_and(|s| in_range(s.len() as f64, range(args))),
        "bool" => v.is_boolean(),
        "int" => v.as_i64().is_some_and(|x| in_range(x as f64, range(args))),
        "float" => v.as_f64().is_some_and(|x| in_range(x, range(args))),
        "port" => v.as_i64().is_some_and(|x| (1..=65535).contains(&x)),
        "email" => v
            .as_str()
            .is_some_and(|s| s.contains('@') && !s.contains(' ')),
        "url" => v.as_str().is_some_and(|s| s.contains("://")),
        "list" => v
            .as_str()
            .is_some_and(|s| args.unwrap_or("").split('|').any(|a| a == s)),
        "match" => {
            // Only the patterns used in plugin.yaml need to be understood here.
            let s = v.as_str().unwrap_or("");
            match args {
                Some("^[0-9]+ ?(s|m|h)?$") => {
                    let digits = s.trim_end_matches(['s', 'm', 'h']).trim_end();
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                }
                other => return Err(format!("the test does not know the pattern {other:?}")),
            }
        }
        other => return Err(format!("unknown schema type {other:?}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v} is not a valid {ty}"))
    }
}

fn check_options(
    path: &str,
    options: &Value,
    schema: &Value,
    depth: usize,
    errors: &mut Vec<String>,
) {
    assert!(
        depth <= 2,
        "{path}: the Supervisor allows at most 2 levels of nesting"
    );
    let (Some(opts), Some(sch)) = (options.as_object(), schema.as_object()) else {
        errors.push(format!("{path}: options and schema must both be maps"));
        return;
    };
    for (key, value) in opts {
        let p = format!("{path}{key}");
        match sch.get(key) {
            None => errors.push(format!("{p}: option without a schema entry")),
            Some(Value::String(ty)) => {
                if value.is_null() {
                    if ty.ends_with('?') {
                        errors.push(format!("{p}: a null default with an optional type"));
                    }
                } else if ty.ends_with('?') {
                    errors.push(format!("{p}: `?` only works for options without a default"));
                } else if let Err(e) = valid(ty, value) {
                    errors.push(format!("{p}: {e}"));
                }
            }
            Some(Value::Array(item)) => {
                let ty = item[0].as_str().unwrap();
                for v in value.as_array().unwrap_or(&vec![]) {
                    if let Err(e) = valid(ty, v) {
                        errors.push(format!("{p}[]: {e}"));
                    }
                }
            }
            Some(nested @ Value::Object(_)) => {
                check_options(&format!("{p}."), value, nested, depth + 1, errors)
            }
            Some(other) => errors.push(format!("{p}: odd schema {other}")),
        }
    }
}

#[test]
fn plugin_yaml_is_a_valid_addon_manifest() {
    let m = yaml("plugin.yaml");
    for key in ["name", "version", "slug", "description", "arch"] {
        assert!(m.get(key).is_some(), "plugin.yaml lacks {key}");
    }
    assert_eq!(
        m["version"],
        env!("CARGO_PKG_VERSION"),
        "add-on version follows Cargo.toml"
    );
    assert_eq!(m["arch"], serde_json::json!(["aarch64", "amd64"]));
    assert!(m["services"]
        .as_array()
        .unwrap()
        .contains(&Value::from("mqtt:need")));
    assert_eq!(m["init"], false);
    assert!(m["watchdog"]
        .as_str()
        .unwrap()
        .ends_with("[PORT:9464]/healthz"));
    let mut errors = vec![];
    check_options("", &m["options"], &m["schema"], 1, &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // Secrets are `password` typed, so the UI hides them.
    assert_eq!(m["schema"]["smtp"]["password"], "password");
    assert!(m["schema"]["mqtt"]["password"]
        .as_str()
        .unwrap()
        .starts_with("password"));
}

#[test]
fn addon_folder_matches_the_manifest() {
    let plugin = std::fs::read(root().join("plugin.yaml")).unwrap();
    let copy = std::fs::read(root().join("docker/addon/config.yaml")).unwrap();
    assert!(
        plugin == copy,
        "docker/addon/config.yaml must be a copy of plugin.yaml"
    );
    let m = yaml("plugin.yaml");
    let tr = yaml("docker/addon/translations/en.yaml");
    for key in m["schema"].as_object().unwrap().keys() {
        let t = &tr["configuration"][key];
        assert!(
            t["name"].is_string() && t["description"].is_string(),
            "translations/en.yaml lacks {key}"
        );
    }
    assert!(root().join("docker/addon/DOCS.md").exists());
    assert!(yaml("repository.yaml")["name"].is_string());
}

#[test]
fn default_options_plus_required_values_load_into_a_valid_config() {
    let m = yaml("plugin.yaml");
    let mut options = m["options"].clone();
    options["smtp"]["username"] = "cam@example.com".into();
    options["smtp"]["password"] = "abcd efgh ijkl mnop".into();
    options["smtp"]["to"] = serde_json::json!(["me@example.com"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("options.json");
    std::fs::write(&path, options.to_string()).unwrap();
    let cfg = snapmail::config::load_addon(None, &path, Some(HashMap::new())).unwrap();
    let smtp = cfg.smtp.unwrap();
    assert_eq!(smtp.app_password().expose(), "abcdefghijklmnop");
    assert_eq!(smtp.recipients(), vec!["me@example.com"]);
    assert_eq!(
        cfg.outbox.dir,
        Path::new("/data/outbox"),
        "state lives under /data"
    );
    assert!(cfg.homeassistant.discovery);
    assert_eq!(cfg.http.listen.port(), 9464);
    assert_eq!(cfg.frigate.url, "http://ccab4aaf-frigate:5000");

    // The advanced file named by config_file sits under the options, which win.
    let file = dir.path().join("snapmail.yaml");
    std::fs::write(
        &file,
        "rate_limit:\n  cooldown: 5m\ncameras:\n  driveway:\n    cooldown: 10m\n",
    )
    .unwrap();
    options["config_file"] = file.display().to_string().into();
    std::fs::write(&path, options.to_string()).unwrap();
    let cfg = snapmail::config::load_addon(None, &path, Some(HashMap::new())).unwrap();
    assert_eq!(
        cfg.rate_limit.cooldown.0.as_secs(),
        60,
        "the UI option wins"
    );
    assert!(
        cfg.cameras.contains_key("driveway"),
        "the file adds what the UI cannot express"
    );
}

/// `KEY value` lines of the Dockerfile (continuations joined).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            l.trim()
                .split_once(' ')
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

#[test]
fn dockerfile_matches_the_program() {
    let lines = dockerfile();
    let get = |k: &str| -> Vec<&String> {
        lines
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v)
            .collect()
    };
    let entry = get("ENTRYPOINT");
    assert_eq!(entry, vec!["[\"/usr/local/bin/snapmail\"]"]);
    assert!(
        get("COPY")
            .iter()
            .any(|c| c.ends_with("/usr/local/bin/snapmail")),
        "the binary is copied to the ENTRYPOINT path"
    );
    assert!(
        get("FROM").iter().any(|f| f.as_str() == "scratch"),
        "minimal runtime image"
    );
    let health = get("HEALTHCHECK");
    assert!(
        health[0].ends_with("CMD [\"/usr/local/bin/snapmail\", \"healthcheck\"]"),
        "{health:?}"
    );
    // The health check really is a command of the binary.
    let out = Command::new(env!("CARGO_BIN_EXE_snapmail"))
        .args(["healthcheck", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The exposed port is the listener's port, and the image makes it reachable.
    let default_port = snapmail::config::Config::default().http.listen.port();
    assert_eq!(get("EXPOSE"), vec![&default_port.to_string()]);
    assert!(get("ENV")
        .iter()
        .any(|e| e.contains(&format!("SNAPMAIL__HTTP__LISTEN=0.0.0.0:{default_port}"))));
    // /data belongs to the Compose user.
    let compose = std::fs::read_to_string(root().join("docker/docker-compose.yml")).unwrap();
    assert!(compose.contains("user: \"10001:10001\""));
    assert!(get("RUN")
        .iter()
        .any(|r| r.contains("chown 10001:10001 /rootfs/data")));
    assert!(compose.contains("SNAPMAIL__SMTP__PASSWORD_FILE: /run/secrets/gmail_app_password"));
    assert!(compose.contains("condition: service_healthy"));
}
