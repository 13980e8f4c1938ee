//! The Home Assistant add-on and the Docker files, judged the way Home Assistant judges
//! them: the Supervisor finds one add-on in the repository and accepts its manifest; the
//! default options with the Gmail fields filled in pass the Supervisor's options check and
//! load into a valid configuration; the manifest passes the add-on linter's rules; the add-on
//! folder builds from itself alone; and both Dockerfiles and the release workflow agree with
//! the manifest and the program.

#[path = "addon_manifest/linter.rs"]
mod linter;
#[path = "addon_manifest/supervisor.rs"]
mod supervisor;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

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

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What a user saves in the options UI after filling in the Gmail fields: the whole
/// defaults, with `smtp` completed (the UI sends every map whole).
fn saved_options(m: &Value) -> Value {
    let mut saved = m["options"].clone();
    saved["smtp"]["username"] = "cam@example.com".into();
    saved["smtp"]["password"] = "abcd efgh ijkl mnop".into();
    saved["smtp"]["to"] = json!(["me@example.com"]);
    saved
}

#[test]
fn the_supervisor_finds_one_addon_and_accepts_its_manifest() {
    assert_eq!(
        supervisor::find_addons(root()),
        vec![PathBuf::from("docker/addon/config.yaml")],
        "the Supervisor takes every config.yaml|json|yml in the repository for an add-on"
    );
    let plugin = std::fs::read(root().join("plugin.yaml")).unwrap();
    let copy = std::fs::read(root().join("docker/addon/config.yaml")).unwrap();
    assert!(
        plugin == copy,
        "docker/addon/config.yaml must be a copy of plugin.yaml"
    );

    let m = yaml("docker/addon/config.yaml");
    let (errors, warnings) = supervisor::check_manifest(&m);
    assert!(
        errors.is_empty(),
        "the Supervisor would skip the add-on: {errors:#?}"
    );
    assert!(
        warnings.is_empty(),
        "the Supervisor would log: {warnings:#?}"
    );

    assert_eq!(
        m["version"],
        env!("CARGO_PKG_VERSION"),
        "add-on version follows Cargo.toml"
    );
    assert_eq!(m["arch"], json!(["aarch64", "amd64"]));
    assert!(m["services"]
        .as_array()
        .unwrap()
        .contains(&Value::from("mqtt:need")));
    assert_eq!(m["init"], false, "the binary is PID 1 itself");
    // The image is pulled as `<image>:<version>`: one name, no tag, no `{arch}` (the
    // published image is multi-arch).
    let image = m["image"].as_str().unwrap();
    assert!(!image.contains(['{', '@']) && !image.rsplit('/').next().unwrap().contains(':'));
    // Secrets are `password` typed, so the UI hides them.
    assert_eq!(m["schema"]["smtp"]["password"], "password");
    assert_eq!(m["schema"]["mqtt"]["password"], "password?");
}

#[test]
fn saved_options_pass_the_supervisors_options_check() {
    let m = yaml("plugin.yaml");
    let options = supervisor::effective_options(&m["options"], &saved_options(&m));
    let out = supervisor::validate_options(&m["schema"], &options)
        .unwrap_or_else(|e| panic!("the Supervisor refuses the options: {e}"));
    assert!(out.warnings.is_empty(), "{:#?}", out.warnings);
    assert_eq!(
        out.options["mqtt"],
        json!({}),
        "the broker comes from the Supervisor"
    );
    assert_eq!(out.options["smtp"]["port"], 587);

    // Before the user fills them in, the Gmail fields are what the Supervisor asks for.
    let err = supervisor::validate_options(&m["schema"], &m["options"]).unwrap_err();
    assert!(
        err == "Missing required option 'username'" || err == "Missing required option 'password'",
        "{err}"
    );
}

#[test]
fn a_schema_map_missing_from_the_options_is_refused_as_by_the_supervisor() {
    // The manifest shipped `mqtt:` in the schema but not in the options; the Supervisor
    // refused every save with this message.
    let m = yaml("plugin.yaml");
    let mut saved = saved_options(&m);
    saved.as_object_mut().unwrap().remove("mqtt");
    let mut defaults = m["options"].clone();
    defaults.as_object_mut().unwrap().remove("mqtt");
    let options = supervisor::effective_options(&defaults, &saved);
    assert_eq!(
        supervisor::validate_options(&m["schema"], &options).unwrap_err(),
        "Missing option 'mqtt' in root"
    );
    // Every map of the schema has an entry in the options.
    for (key, ty) in m["schema"].as_object().unwrap() {
        if ty.is_object() {
            assert!(m["options"][key].is_object(), "options lack `{key}: {{}}`");
        }
    }
}

#[test]
fn option_types_follow_the_supervisors_rules() {
    let check = |ty: Value, v: Value| {
        supervisor::validate_options(&json!({ "k": ty }), &json!({ "k": v }))
            .map(|o| o.options["k"].clone())
    };
    assert_eq!(
        check(json!("int(1,100)"), json!("42")).unwrap(),
        42,
        "text is coerced"
    );
    assert!(check(json!("int(1,100)"), json!(101)).is_err());
    assert!(check(json!("int"), json!("4.2")).is_err());
    assert_eq!(check(json!("bool"), json!("on")).unwrap(), true);
    assert!(check(json!("bool"), json!("maybe")).is_err());
    assert!(check(json!("port"), json!(0)).is_err());
    assert_eq!(check(json!("port"), json!("587")).unwrap(), 587);
    assert!(
        check(json!("str"), json!(5)).is_err(),
        "str takes text only"
    );
    assert!(
        check(json!("str(1,10)"), json!("abc")).is_err(),
        "bounded str refuses everything"
    );
    assert!(check(json!("email"), json!("me@example.com")).is_ok());
    assert!(check(json!("email"), json!("me@localhost")).is_err());
    assert!(check(json!("url"), json!("http://ccab4aaf-frigate:5000")).is_ok());
    assert!(check(json!("url"), json!("ccab4aaf-frigate:5000")).is_err());
    assert_eq!(
        check(json!("match(^[0-9]+ ?(s|m|h)?$)"), json!(90)).unwrap(),
        "90",
        "match sees the value as text"
    );
    assert!(check(json!("match(^[0-9]+ ?(s|m|h)?$)"), json!("1d")).is_err());
    assert!(
        check(json!("match([0-9]+)"), json!("12x")).is_ok(),
        "anchored at the start only"
    );
    assert_eq!(
        check(json!("list(info|debug)"), json!("debug")).unwrap(),
        "debug"
    );
    assert!(check(json!("list(info|debug)"), json!("warn")).is_err());
    assert!(
        check(json!("str"), json!(null)).is_err(),
        "null is a missing value"
    );

    // Missing keys: optional scalars and lists of optional scalars may be absent; maps never.
    let v = |schema: Value, options: Value| supervisor::validate_options(&schema, &options);
    assert!(v(json!({ "a": "str?" }), json!({})).is_ok());
    assert!(v(json!({ "a": ["email?"] }), json!({})).is_ok());
    assert_eq!(
        v(json!({ "a": ["email"] }), json!({})).unwrap_err(),
        "Missing option 'a' in root"
    );
    assert_eq!(
        v(json!({ "a": { "b": "str?" } }), json!({})).unwrap_err(),
        "Missing option 'a' in root"
    );
    assert_eq!(
        v(json!({ "a": { "b": "str" } }), json!({ "a": {} })).unwrap_err(),
        "Missing option 'b' in a"
    );
    // Unknown keys are dropped with a warning, not refused.
    let out = v(json!({ "a": "str?" }), json!({ "zzz": 1 })).unwrap();
    assert_eq!(out.options, json!({}));
    assert_eq!(out.warnings.len(), 1);
    assert!(!supervisor::is_schema_type("string"));
    assert!(supervisor::is_schema_type("float(-1.5,2)?"));
}

#[test]
fn the_manifest_passes_the_addon_linter_rules() {
    let errors = linter::lint(&yaml("docker/addon/config.yaml"));
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_linter_rules_catch_what_they_are_written_for() {
    // The keys the manifest used to carry.
    let mut m = yaml("plugin.yaml");
    m["startup"] = "application".into();
    m["boot"] = "auto".into();
    m["watchdog"] = "http://[HOST]:[PORT:9464]/healthz".into();
    m["webui_url"] = "x".into();
    let errors = linter::lint(&m);
    for expected in [
        "'startup' should be removed, it uses a default value",
        "'boot' should be removed, it uses a default value",
        "'watchdog', is obsolete. Use the native Docker HEALTHCHECK directive instead.",
        "Additional properties are not allowed ('webui_url' was unexpected)",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "{expected} not in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 4, "{errors:#?}");

    let mut m = yaml("plugin.yaml");
    m["map"] = json!(["addon_config:rw", { "type": "share" }]);
    m["arch"] = json!(["amd64", "x86"]);
    m["version"] = json!(1);
    assert_eq!(linter::lint(&m).len(), 3, "{:#?}", linter::lint(&m));
}

#[test]
fn default_options_plus_required_values_load_into_a_valid_config() {
    // What the Supervisor writes to /data/options.json: the validated options.
    let m = yaml("plugin.yaml");
    let options = supervisor::effective_options(&m["options"], &saved_options(&m));
    let mut options = supervisor::validate_options(&m["schema"], &options)
        .unwrap()
        .options;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("options.json");
    std::fs::write(&path, options.to_string()).unwrap();
    let cfg = snapmail::config::load_addon(None, &path, Some(HashMap::new())).unwrap();
    let smtp = cfg.smtp.unwrap();
    assert_eq!(smtp.app_password().expose(), "abcdefghijklmnop");
    assert_eq!(smtp.recipients(), vec!["me@example.com"]);
    assert!(cfg.mqtt.url.is_none(), "left for the Supervisor's broker");
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

#[test]
fn addon_folder_has_translations_docs_and_a_repository() {
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
    let repo = yaml("repository.yaml");
    assert!(repo["name"].is_string());
    assert_eq!(
        repo["url"], m["url"],
        "repository.yaml and the add-on name one home"
    );
    assert!(
        !root().join("docker/addon/build.yaml").exists(),
        "build.yaml is retired; the Dockerfile names its base"
    );
}

/// `INSTRUCTION arguments` lines of a Dockerfile (continuations joined, comments dropped).
fn dockerfile(path: &str) -> Vec<(String, String)> {
    let text = read(path);
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            l.trim()
                .split_once(' ')
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn instructions<'a>(lines: &'a [(String, String)], key: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The lines from the last `FROM` on: what the shipped image is made of.
fn runtime_stage(lines: &[(String, String)]) -> Vec<(String, String)> {
    let last = lines.iter().rposition(|(k, _)| k == "FROM").unwrap();
    lines[last..].to_vec()
}

#[test]
fn dockerfile_matches_the_program() {
    let lines = dockerfile("docker/Dockerfile");
    let get = |k: &str| instructions(&lines, k);
    assert_eq!(get("ENTRYPOINT"), vec!["[\"/usr/local/bin/snapmail\"]"]);
    assert!(
        get("COPY")
            .iter()
            .any(|c| c.ends_with("/usr/local/bin/snapmail")),
        "the binary is copied to the ENTRYPOINT path"
    );
    assert_eq!(
        get("FROM").last().unwrap().as_str(),
        "scratch",
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
    // The add-on's build arguments end up in the Supervisor's labels.
    let runtime = runtime_stage(&lines);
    let args = instructions(&runtime, "ARG");
    assert!(
        args.contains(&&"BUILD_ARCH=".to_string()) && args.contains(&&"BUILD_VERSION=".to_string())
    );
    let labels = instructions(&runtime, "LABEL")
        .into_iter()
        .cloned()
        .collect::<String>();
    for label in [
        "io.hass.type=\"addon\"",
        "io.hass.arch=\"${BUILD_ARCH}\"",
        "io.hass.version=\"${BUILD_VERSION}\"",
        "io.hass.name=",
        "io.hass.description=",
    ] {
        assert!(labels.contains(label), "LABEL lacks {label}: {labels}");
    }
    // /data belongs to the Compose user.
    let compose = read("docker/docker-compose.yml");
    assert!(compose.contains("user: \"10001:10001\""));
    assert!(get("RUN")
        .iter()
        .any(|r| r.contains("chown 10001:10001 /rootfs/data")));
    assert!(compose.contains("SNAPMAIL__SMTP__PASSWORD_FILE: /run/secrets/gmail_app_password"));
    assert!(compose.contains("condition: service_healthy"));
    // Everything the build copies is in the build context its ignore file leaves.
    let ignore = read("docker/Dockerfile.dockerignore");
    for copy in get("COPY").iter().filter(|c| !c.starts_with("--from")) {
        let sources: Vec<&str> = copy.split_whitespace().collect();
        for src in &sources[..sources.len() - 1] {
            assert!(
                ignore.lines().any(|l| l == format!("!{src}")),
                "{src} is excluded from the build context"
            );
        }
    }
}

#[test]
fn the_addon_folder_builds_from_itself_alone() {
    let dir = root().join("docker/addon");
    for arch in ["aarch64", "amd64"] {
        let file = supervisor::dockerfile_for(&dir, arch);
        assert!(file.is_file(), "dockerfile is missing: {}", file.display());
    }
    let lines = dockerfile("docker/addon/Dockerfile");
    // The folder is the whole context: nothing may be copied from outside it.
    for (key, value) in &lines {
        if key != "COPY" && key != "ADD" || value.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = value.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                !src.contains("..") && dir.join(src).exists(),
                "{key} {src}: not inside docker/addon/"
            );
        }
    }
    let build_stage_args = instructions(&lines, "ARG");
    assert!(build_stage_args
        .iter()
        .any(|a| a.as_str() == "BUILD_VERSION"));
    assert!(
        instructions(&lines, "ARG")
            .iter()
            .any(|a| a.starts_with("SNAPMAIL_SOURCE=") && a.contains("${BUILD_VERSION}")),
        "the source of the version being built"
    );
    // Same image whichever way it is built.
    assert_eq!(
        runtime_stage(&lines),
        runtime_stage(&dockerfile("docker/Dockerfile")),
        "docker/addon/Dockerfile and docker/Dockerfile must ship the same runtime stage"
    );
    // The base images both build stages name are the same.
    assert_eq!(
        instructions(&lines, "FROM")[0],
        instructions(&dockerfile("docker/Dockerfile"), "FROM")[0]
    );
}

#[test]
fn the_release_workflow_publishes_what_the_manifest_pulls() {
    let wf = read(".github/workflows/release.yml");
    let m = yaml("plugin.yaml");
    // It takes the image name and version from the add-on's manifest, and refuses a tag
    // that is not that version or an image outside the repository's owner.
    assert!(wf.contains("docker/addon/config.yaml"));
    assert!(wf.contains("tags:") && wf.contains("- \"v*\""));
    assert!(wf.contains("ghcr.io/${owner}/snapmail"));
    assert!(m["image"].as_str().unwrap().ends_with("/snapmail"));
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "aarch64")] {
        assert!(
            wf.contains(&format!("platform: {platform}")) && wf.contains(&format!("arch: {arch}")),
            "{platform} as {arch}"
        );
    }
    assert!(wf.contains("BUILD_ARCH=${{ matrix.arch }}"));
    assert!(wf.contains("BUILD_VERSION=${{ needs.meta.outputs.version }}"));
    assert!(wf.contains("file: docker/Dockerfile"));
    assert!(wf.contains("imagetools create"));
    let lint = read(".github/workflows/addon.yml");
    assert!(lint.contains("frenck/action-addon-linter") && lint.contains("path: docker/addon"));
}
