//! Secrets never leak and TLS is verified by default. The daemon runs at `trace` level with
//! known passwords for Gmail, the MQTT broker, a Hikvision camera and Frigate, through a
//! session with failures (a refused login, a permanently rejected mail in `dead/`), and no
//! byte of its output or of the files it wrote contains any of them, plain or encoded.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::daemon::{self, Daemon};
use crate::support::http::{self, Request, Response};
use crate::support::images;
use crate::support::mosquitto;
use crate::support::rig::{Rig, T};
use crate::support::smtp::{Fault, SmtpServer};
use base64::Engine as _;

const SMTP_USER: &str = "cam@example.com";
/// Google shows app passwords in four groups; snapmail strips the spaces.
const SMTP_PASSWORD: &str = "qzxw vuts rpon mlkj";
const SMTP_PASSWORD_BARE: &str = "qzxwvutsrponmlkj";
const SMTP_WRONG_PASSWORD: &str = "Wr0ng-Gmail-Pa55";
const MQTT_USER: &str = "snapmail";
const MQTT_PASSWORD: &str = "Mqtt-S3cret-7741";
const CAMERA_PASSWORD: &str = "Cam-S3cret-9913";
const FRIGATE_PASSWORD: &str = "Frig-S3cret-5528";

/// Every secret, and the encodings in which one could slip out: base64 of the password and
/// of SASL PLAIN (`\0user\0password`), as lettre sends it in `AUTH PLAIN`.
fn needles() -> Vec<(String, Vec<u8>)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out = Vec::new();
    for pw in [
        SMTP_PASSWORD,
        SMTP_PASSWORD_BARE,
        SMTP_WRONG_PASSWORD,
        MQTT_PASSWORD,
        CAMERA_PASSWORD,
        FRIGATE_PASSWORD,
    ] {
        out.push((pw.to_string(), pw.as_bytes().to_vec()));
        out.push((format!("base64({pw})"), b64(pw).into_bytes()));
    }
    for pw in [SMTP_PASSWORD_BARE, SMTP_WRONG_PASSWORD] {
        let plain = format!("\0{SMTP_USER}\0{pw}");
        out.push((format!("AUTH PLAIN with {pw}"), b64(&plain).into_bytes()));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (recursively) except the ones the test wrote itself.
fn files_written_by_snapmail(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("read the daemon's directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files_written_by_snapmail(&path, out);
        } else if !path
            .file_name()
            .is_some_and(|n| n == "config.yaml" || n.to_string_lossy().ends_with(".secret"))
        {
            out.push(path);
        }
    }
}

/// Frigate 0.14+ on its authenticated port: `POST /api/login` sets the `frigate_token`
/// cookie; everything else needs it as a bearer token.
fn frigate_with_login(jpeg: Vec<u8>) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    let token = Arc::new(Mutex::new(None::<String>));
    move |req: &Request| {
        if req.method == "POST" && req.path == "/api/login" {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if body["user"] == "mailer" && body["password"] == FRIGATE_PASSWORD {
                *token.lock().unwrap() = Some("tok-1".into());
                return Response::json(200, "{}")
                    .with_header("Set-Cookie", "frigate_token=tok-1; Path=/; HttpOnly");
            }
            return Response::json(401, r#"{"message": "Login failed"}"#);
        }
        let ok = token
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|t| req.header("authorization") == Some(&format!("Bearer {t}")));
        match req.path_only() {
            _ if !ok => Response::status(401, "Unauthorized"),
            "/api/version" => Response::new(200, "text/plain", b"0.15.2-2ab4b8c".to_vec()),
            p if p.ends_with("/snapshot.jpg") => Response::jpeg(jpeg.clone()),
            _ => Response::json(404, r#"{"success": false}"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_the_spool_even_at_trace_level() {
    let smtp = SmtpServer::builder()
        .username(SMTP_USER)
        .app_password(SMTP_PASSWORD_BARE)
        .start()
        .await;
    let r = Rig {
        broker: mosquitto::start_with_users(&[(MQTT_USER, MQTT_PASSWORD)]),
        smtp,
        frigate: http::start(frigate_with_login(images::camera_jpeg(640, 360, 85))).await,
    };
    let camera = http::start(http::digest_protected(
        "admin",
        CAMERA_PASSWORD,
        "IP Camera(C1234)",
        {
            let jpeg = images::camera_jpeg(640, 360, 85);
            move |_: &Request| Response::jpeg(jpeg.clone())
        },
    ))
    .await;
    let dir = tempfile::Builder::new()
        .prefix("snapmail-secrets-")
        .tempdir()
        .expect("temp dir");
    // The camera password comes from a file, the others inline: both paths are covered.
    let camera_secret = dir.path().join("camera.secret");
    std::fs::write(&camera_secret, format!("{CAMERA_PASSWORD}\n")).unwrap();
    let config = r
        .config()
        .replace("abcd efgh ijkl mnop", SMTP_PASSWORD)
        .replace(
            "  client_id: snapmail-test\n",
            &format!("  client_id: snapmail-test\n  username: {MQTT_USER}\n  password: \"{MQTT_PASSWORD}\"\n"),
        )
        .replace(
            "frigate:\n",
            &format!("frigate:\n  version: \"0.15\"\n  username: mailer\n  password: \"{FRIGATE_PASSWORD}\"\n"),
        )
        + &format!(
            r#"sources:
  - kind: frigate_events
  - kind: hikvision_bridge
    topic: camera-alerts/+/+
    cameras:
      gate: {{url: "{url}", username: admin, password_file: {file}}}
"#,
            url = camera.url(),
            file = camera_secret.display()
        );
    let trace = [
        ("RUST_LOG", "trace"),
        ("SNAPMAIL__OUTBOX__CREDENTIALS_PAUSE", "1s"),
    ];

    // Run 1: the wrong Gmail password. The login is refused and the mail stays queued.
    let mut wrong = trace.to_vec();
    wrong.push(("SNAPMAIL__SMTP__PASSWORD", SMTP_WRONG_PASSWORD));
    let mut d = daemon::start_in(dir.path(), Some(&config), &wrong);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("frontdoor", 1).await;
    d.wait_for_log("LOGIN REFUSED", T).await;
    assert!(r.smtp.messages().is_empty());
    d.terminate();
    d.wait_exit(T).await;
    let mut logs = d.all_logs();

    // Run 2: the right password. The queued mail is refused for good (dead/), then a
    // Frigate event (Frigate login) and a Hikvision event (Digest auth) are mailed.
    r.smtp.inject(
        Fault::DataEnd(
            "550 5.1.1 The email account that you tried to reach does not exist.".into(),
        ),
        1,
    );
    let mut d = daemon::start_in(dir.path(), Some(&config), &trace);
    d.wait_for_log("mqtt: subscribed", T).await;
    d.wait_for_log("outbox: moved to", T).await;
    r.frigate_event("frontdoor", 2).await;
    r.broker
        .publish("camera-alerts/gate/VMD", b"Motion alarm", false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let subjects: Vec<_> = mails.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(
        subjects.contains(&"gate: motion".to_string()),
        "{subjects:?}"
    );
    assert!(
        camera
            .requests()
            .iter()
            .any(|q| q.header("authorization").is_some()),
        "the camera was asked with Digest credentials"
    );
    d.terminate();
    d.wait_exit(T).await;
    logs.push('\n');
    logs.push_str(&d.logs());
    assert!(
        logs.lines().count() > 200,
        "trace level was on ({} lines)",
        logs.lines().count()
    );

    let mut files = Vec::new();
    files_written_by_snapmail(dir.path(), &mut files);
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("/dead/")),
        "the session left a dead letter: {files:?}"
    );
    // The search itself works: the config the test wrote holds the inline secrets.
    let written = std::fs::read(dir.path().join("config.yaml")).unwrap();
    for pw in [SMTP_PASSWORD, MQTT_PASSWORD, FRIGATE_PASSWORD] {
        assert!(contains(&written, pw.as_bytes()), "{pw} in config.yaml");
    }
    let mut leaks = Vec::new();
    for (name, needle) in needles() {
        if contains(logs.as_bytes(), &needle) {
            leaks.push(format!("{name} in the log"));
        }
        for f in &files {
            if contains(&std::fs::read(f).unwrap_or_default(), &needle) {
                leaks.push(format!("{name} in {}", f.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_smtp_server_is_refused_without_ca_file() {
    let r = crate::support::rig::start(64, 64).await;
    let config = r
        .config()
        .lines()
        .filter(|l| !l.trim_start().starts_with("ca_file:"))
        .collect::<Vec<_>>()
        .join("\n");
    let d = Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("smtp.ca_file", T).await;
    assert!(
        r.smtp.messages().is_empty(),
        "nothing is sent over an unverified connection"
    );
    assert_eq!(r.smtp.auth_attempts(), 0, "the password was never sent");
}

#[test]
fn the_http_listener_binds_loopback_by_default() {
    let config = snapmail::config::Config::default();
    assert!(
        config.http.listen.ip().is_loopback(),
        "{}",
        config.http.listen
    );
    assert!(
        config.mqtt.listen.ip().is_loopback(),
        "{}",
        config.mqtt.listen
    );
}

const REFRESH_TOKEN: &str = "1//0g-Refresh-S3cret-4471";
const CLIENT_SECRET: &str = "GOCSPX-Client-S3cret-2290";
const ACCESS_TOKEN: &str = "ya29.Access-S3cret-6612";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_never_reach_the_log_or_the_spool_even_at_trace_level() {
    let smtp = SmtpServer::builder()
        .username(SMTP_USER)
        .oauth_token(ACCESS_TOKEN)
        .start()
        .await;
    let r = Rig {
        broker: mosquitto::start(),
        smtp,
        frigate: http::start(http::frigate(images::camera_jpeg(640, 360, 85))).await,
    };
    // Google's token endpoint: refuses the first refresh (a failure in the session), then
    // hands out the access token for the right refresh token and client secret.
    let refreshes = Arc::new(Mutex::new(0usize));
    let endpoint = http::start({
        let refreshes = refreshes.clone();
        move |req: &Request| {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let mut n = refreshes.lock().unwrap();
            *n += 1;
            if *n == 1 || !body.contains("GOCSPX-Client-S3cret-2290") {
                return Response::json(
                    400,
                    r#"{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"#,
                );
            }
            Response::json(
                200,
                &format!(r#"{{"access_token": "{ACCESS_TOKEN}", "expires_in": 3599, "token_type": "Bearer"}}"#),
            )
        }
    })
    .await;
    let config = r.config().replace(
        "  password: \"abcd efgh ijkl mnop\"\n",
        &format!(
            "  auth: oauth2\n  oauth2:\n    client_id: 1234-abc.apps.googleusercontent.com\n    \
             client_secret: {CLIENT_SECRET}\n    refresh_token: \"{REFRESH_TOKEN}\"\n    \
             token_url: {}/token\n",
            endpoint.url()
        ),
    );
    assert!(config.contains(REFRESH_TOKEN), "{config}");
    let mut d = Daemon::start(
        Some(&config),
        &[
            ("RUST_LOG", "trace"),
            ("SNAPMAIL__OUTBOX__CREDENTIALS_PAUSE", "1s"),
        ],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("driveway", 1).await;
    r.smtp.wait_for_messages(1, T).await;
    assert!(
        *refreshes.lock().unwrap() >= 2,
        "the first refresh was refused"
    );
    d.terminate();
    d.wait_exit(T).await;

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let xoauth2 = format!("user={SMTP_USER}\x01auth=Bearer {ACCESS_TOKEN}\x01\x01");
    let needles = [
        REFRESH_TOKEN.to_string(),
        "1%2F%2F0g-Refresh-S3cret-4471".to_string(),
        CLIENT_SECRET.to_string(),
        ACCESS_TOKEN.to_string(),
        b64(&xoauth2),
    ];
    let logs = d.all_logs();
    let mut files = Vec::new();
    files_written_by_snapmail(d.dir(), &mut files);
    let mut leaks = Vec::new();
    for needle in &needles {
        if logs.contains(needle.as_str()) {
            leaks.push(format!("{needle} in the log"));
        }
        for f in &files {
            if contains(&std::fs::read(f).unwrap_or_default(), needle.as_bytes()) {
                leaks.push(format!("{needle} in {}", f.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}
