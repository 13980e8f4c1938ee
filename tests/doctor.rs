//! `snapmail doctor`, `check` and `test-email` run as the real binary against the Gmail-like
//! SMTP server in each failure mode, a real Mosquitto and a Frigate-like HTTP server: the
//! output must name the fix, and the exit code must say whether everything needed works.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::certs::TestCa;
use crate::support::cli::{doctor, snapmail};
use crate::support::http::{self, Response};
use crate::support::rig::{self, Rig};
use crate::support::smtp::{self, Fault, SmtpServer};
use crate::support::{images, mosquitto};

const T: Duration = Duration::from_secs(90);

/// Frigate that serves `latest.jpg` for the driveway camera only.
fn latest_jpg(jpeg: Vec<u8>) -> impl Fn(&http::Request) -> Response + Send + Sync + 'static {
    move |req: &http::Request| {
        if req.path_only() == "/api/driveway/latest.jpg" {
            Response::jpeg(jpeg.clone())
        } else {
            Response::json(404, r#"{"success": false, "message": "Camera not found"}"#)
        }
    }
}

async fn rig_with(smtp: SmtpServer) -> Rig {
    Rig {
        broker: mosquitto::start(),
        smtp,
        frigate: http::start(latest_jpg(images::camera_jpeg(1920, 1080, 85))).await,
    }
}

async fn rig() -> Rig {
    rig_with(smtp::start().await).await
}

/// The rig's config plus one camera under `cameras:`.
fn config(rig: &Rig) -> String {
    format!("{}cameras:\n  driveway: {{}}\n", rig.config())
}

/// A config line replaced, e.g. `port: 123` for the SMTP port.
fn with(config: &str, from: &str, to: &str) -> String {
    assert!(config.contains(from), "{from:?} not in config");
    config.replacen(from, to, 1)
}

#[tokio::test]
async fn happy_path_passes_every_step_and_sends_with_the_spaced_app_password() {
    let rig = rig().await;
    // Retained, so doctor sees it as soon as it subscribes.
    rig.broker
        .publish("frigate/events", rig::NEW.as_bytes(), true)
        .await;
    let out = doctor(&config(&rig), &["--send"], &[]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.line("✔", "app password")
            .contains("the 3 spaces are removed"),
        "{out}"
    );
    assert!(out.line("✔", "smtp dns").contains("localhost →"), "{out}");
    assert!(
        out.line("✔", "smtp tcp").contains("connected to localhost"),
        "{out}"
    );
    assert!(out.line("✔", "smtp tls").contains("STARTTLS"), "{out}");
    let ehlo = out.line("✔", "smtp ehlo");
    assert!(
        ehlo.contains("STARTTLS offered")
            && ehlo.contains("PLAIN")
            && ehlo.contains("SIZE 35882577"),
        "{out}"
    );
    assert!(
        out.line("✔", "smtp auth").contains("cam@example.com"),
        "{out}"
    );
    assert!(out.line("✔", "smtp send").contains("250 2.0.0 OK"), "{out}");
    assert!(
        out.line("✔", "mqtt connect")
            .contains("connected to 127.0.0.1"),
        "{out}"
    );
    assert!(
        out.line("✔", "mqtt subscribe").contains("frigate/events"),
        "{out}"
    );
    let seen = out.line("  ·", "mqtt message");
    assert!(
        seen.contains("driveway") && seen.contains("person") && seen.contains("would mail"),
        "{out}"
    );
    let snap = out.line("✔", "snapshot driveway");
    assert!(snap.contains("200") && snap.contains("1920×1080"), "{out}");
    assert!(!out.stdout.contains('✘'), "{out}");
    let mails = rig.smtp.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(mails[0].rcpt_to, vec!["me@example.com"]);
    assert!(
        !out.stdout.contains("abcd efgh") && !out.stdout.contains("abcdefgh"),
        "{out}"
    );
}

#[tokio::test]
async fn account_password_534_says_create_an_app_password() {
    let rig = rig().await;
    let out = doctor(
        &config(&rig),
        &[],
        &[("SNAPMAIL__SMTP__PASSWORD", "correct-horse-account")],
    )
    .await;
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.line("!", "app password")
            .contains("looks like an account password"),
        "{out}"
    );
    let auth = out.line("✘", "smtp auth");
    assert!(auth.contains("534 5.7.9"), "{out}");
    assert!(
        auth.contains("that is your Google account password; create an app password"),
        "{out}"
    );
    assert!(auth.contains("2-Step Verification"), "{out}");
    assert!(!out.stdout.contains("correct-horse"), "{out}");
}

#[tokio::test]
async fn wrong_app_password_535_says_generate_a_new_one() {
    let rig = rig().await;
    let out = doctor(
        &config(&rig),
        &[],
        &[("SNAPMAIL__SMTP__PASSWORD", "abcd efgh ijkl mnoq")],
    )
    .await;
    assert_ne!(out.code, 0, "{out}");
    let auth = out.line("✘", "smtp auth");
    assert!(auth.contains("535 5.7.8"), "{out}");
    assert!(
        auth.contains("wrong, revoked or mistyped app password; generate a new one"),
        "{out}"
    );
    // Later steps still ran.
    out.line("✔", "mqtt connect");
    out.line("✔", "snapshot driveway");
}

#[tokio::test]
async fn too_many_logins_454_says_wait() {
    let rig = rig().await;
    rig.smtp.inject(
        Fault::Auth("454 4.7.0 Too many login attempts, please try again later.".into()),
        5,
    );
    let out = doctor(&config(&rig), &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let auth = out.line("✘", "smtp auth");
    assert!(
        auth.contains("454 4.7.0") && auth.contains("too many login attempts; wait"),
        "{out}"
    );
}

#[tokio::test]
async fn must_issue_starttls_530_names_the_security_setting() {
    let rig = rig().await;
    rig.smtp.inject(
        Fault::Auth("530 5.7.0 Must issue a STARTTLS command first. For more information, go to\n530 5.7.0  https://support.google.com/a/answer/3221692".into()),
        5,
    );
    let out = doctor(&config(&rig), &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let auth = out.line("✘", "smtp auth");
    assert!(
        auth.contains("530 5.7.0") && auth.contains("smtp.security: starttls"),
        "{out}"
    );
}

#[tokio::test]
async fn daily_quota_550_on_send_is_explained() {
    let rig = rig().await;
    rig.smtp.inject(
        Fault::DataEnd("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n550-5.4.5 sending limits go to\n550 5.4.5  https://support.google.com/a/answer/166852".into()),
        1,
    );
    let out = doctor(&config(&rig), &["--send"], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    out.line("✔", "smtp auth");
    let send = out.line("✘", "smtp send");
    assert!(
        send.contains("550 5.4.5")
            && send.contains("daily sending limit")
            && send.contains("rate_limit.cooldown"),
        "{out}"
    );
}

#[tokio::test]
async fn message_too_big_552_on_send_is_explained() {
    let rig = rig().await;
    rig.smtp.inject(
        Fault::DataEnd("552-5.3.4 Your message exceeded Google's message size limits. For more information, go to\n552 5.3.4  https://support.google.com/mail/?p=MaxSizeError".into()),
        1,
    );
    let out = doctor(&config(&rig), &["--send"], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let send = out.line("✘", "smtp send");
    assert!(
        send.contains("552 5.3.4") && send.contains("snapshot.max_image_bytes"),
        "{out}"
    );
}

#[tokio::test]
async fn starttls_on_the_implicit_tls_port_is_detected() {
    let rig = rig().await;
    let cfg = with(
        &config(&rig),
        &format!("port: {}", rig.smtp.starttls_port),
        &format!("port: {}", rig.smtp.tls_port),
    );
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let tls = out.line("✘", "smtp tls");
    assert!(tls.contains("expects TLS from the first byte"), "{out}");
    assert!(tls.contains("set smtp.security: tls"), "{out}");
    out.line("-", "smtp auth");
}

#[tokio::test]
async fn implicit_tls_on_the_starttls_port_is_detected() {
    let rig = rig().await;
    let cfg = with(&config(&rig), "security: starttls", "security: tls");
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let tls = out.line("✘", "smtp tls");
    assert!(
        tls.contains("plain-text greeting") && tls.contains("220"),
        "{out}"
    );
    assert!(tls.contains("set smtp.security: starttls"), "{out}");
}

#[tokio::test]
async fn closed_port_points_at_the_other_port_that_works() {
    let rig = rig().await;
    let closed = smtp::closed_port();
    let cfg = with(
        &config(&rig),
        &format!("port: {}", rig.smtp.starttls_port),
        &format!("port: {closed}"),
    );
    let tls_port = rig.smtp.tls_port.to_string();
    let out = doctor(&cfg, &["--other-port", &tls_port], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let tcp = out.line("✘", "smtp tcp");
    assert!(tcp.contains("connection refused"), "{out}");
    assert!(
        tcp.contains(&format!("port {closed} is blocked by your network or ISP; {tls_port} works: set smtp.port: {tls_port}")),
        "{out}"
    );
    assert!(tcp.contains("smtp.security: tls"), "{out}");
}

#[tokio::test]
async fn closed_port_without_alternative_says_nothing_listens() {
    let rig = rig().await;
    let closed = smtp::closed_port();
    let cfg = with(
        &config(&rig),
        &format!("port: {}", rig.smtp.starttls_port),
        &format!("port: {closed}"),
    );
    let other = smtp::closed_port().to_string();
    let out = doctor(&cfg, &["--other-port", &other], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.line("✘", "smtp tcp")
            .contains("nothing accepts connections"),
        "{out}"
    );
}

#[tokio::test]
async fn a_port_that_never_speaks_is_named() {
    let rig = rig().await;
    let (silent, _task) = smtp::silent_port().await;
    let cfg = with(
        &config(&rig),
        &format!("port: {}", rig.smtp.starttls_port),
        &format!("port: {silent}"),
    );
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let tls = out.line("✘", "smtp tls");
    assert!(tls.contains("never says anything"), "{out}");
    assert!(tls.contains("firewall"), "{out}");
}

#[tokio::test]
async fn untrusted_certificate_names_ca_file() {
    let rig = rig().await;
    let ca_line = format!("  ca_file: {}\n", rig.smtp.ca_file.display());
    let cfg = with(&config(&rig), &ca_line, "");
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let tls = out.line("✘", "smtp tls");
    assert!(
        tls.contains("signed by a CA snapmail does not trust"),
        "{out}"
    );
    assert!(tls.contains("smtp.ca_file"), "{out}");
}

#[tokio::test]
async fn unresolvable_host_fails_at_dns() {
    let rig = rig().await;
    let cfg = with(
        &config(&rig),
        "host: localhost",
        "host: smtp.no-such-host.invalid",
    );
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let dns = out.line("✘", "smtp dns");
    assert!(
        dns.contains("smtp.no-such-host.invalid")
            && dns.contains("check the spelling of smtp.host"),
        "{out}"
    );
    out.line("✔", "mqtt connect");
}

#[tokio::test]
async fn mqtt_bad_credentials_and_missing_snapshot_fail() {
    let smtp = smtp::start().await;
    let rig = Rig {
        broker: mosquitto::start_with_users(&[("cam", "right-pass")]),
        smtp,
        frigate: http::start(latest_jpg(images::camera_jpeg(640, 360, 85))).await,
    };
    let cfg = with(
        &config(&rig),
        "  client_id: snapmail-test\n",
        "  client_id: snapmail-test\n  username: cam\n  password: wrong-pass\n",
    );
    let cfg = with(&cfg, "  driveway: {}\n", "  garage: {}\n");
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    out.line("✔", "smtp auth");
    let mqtt = out.line("✘", "mqtt connect");
    assert!(
        mqtt.contains("refused the login") && mqtt.contains("mqtt.username"),
        "{out}"
    );
    let snap = out.line("✘", "snapshot garage");
    assert!(
        snap.contains("404") && snap.contains("/api/garage/latest.jpg"),
        "{out}"
    );
    assert!(!out.stdout.contains("wrong-pass"), "{out}");
}

#[tokio::test]
async fn no_cameras_and_no_messages_are_warnings_not_failures() {
    let rig = rig().await;
    let out = doctor(&rig.config(), &["--json"], &[]).await;
    assert_eq!(out.code, 0, "{out}");
    let steps: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    let steps = steps.as_array().expect("an array of steps");
    let find = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}\n{out}"))
    };
    assert_eq!(find("smtp auth")["status"], "ok");
    assert_eq!(find("mqtt listen")["status"], "warn");
    assert!(find("mqtt listen")["fix"]
        .as_str()
        .unwrap()
        .contains("frigate.topic_prefix"));
    assert_eq!(find("snapshots")["status"], "skip");
    assert!(steps.iter().all(|s| s["status"] != "fail"), "{out}");
}

#[tokio::test]
async fn invalid_config_fails_naming_the_key() {
    let rig = rig().await;
    let cfg = with(&config(&rig), "cooldown: 60s", "cooldown: soon");
    let out = doctor(&cfg, &[], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.line("✘", "config").contains("rate_limit.cooldown"),
        "{out}"
    );
    let out = snapmail(&cfg, &["check"], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("rate_limit.cooldown: \"soon\" is not a duration"),
        "{out}"
    );
}

#[tokio::test]
async fn check_prints_origins_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret: PathBuf = dir.path().join("mqtt-pass");
    std::fs::write(&secret, "broker-secret-123\n").unwrap();
    let cfg = format!(
        "mqtt:\n  url: mqtt://127.0.0.1:1883\n  username: cam\n  password_file: {}\nsmtp:\n  username: cam@example.com\n  password: \"abcd efgh ijkl mnop\"\n",
        secret.display()
    );
    let out = snapmail(&cfg, &["check"], &[("SNAPMAIL__SMTP__PORT", "465")]).await;
    assert_eq!(out.code, 0, "{out}");
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key}\n{out}"))
            .to_owned()
    };
    assert!(
        line("smtp.port").contains("465")
            && line("smtp.port").contains("(env SNAPMAIL__SMTP__PORT)"),
        "{out}"
    );
    assert!(
        line("smtp.security").contains("tls") && line("smtp.security").contains("from smtp.port"),
        "{out}"
    );
    assert!(
        line("smtp.password").contains("[redacted]") && line("smtp.password").contains("(file "),
        "{out}"
    );
    assert!(
        line("mqtt.password").contains("[redacted]")
            && line("mqtt.password").contains("(secret file "),
        "{out}"
    );
    assert!(line("rate_limit.cooldown").contains("(default)"), "{out}");
    assert!(
        !out.stdout.contains("abcd") && !out.stdout.contains("broker-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn test_email_sends_a_camera_snapshot_and_prints_the_reply() {
    let rig = rig().await;
    let out = snapmail(
        &config(&rig),
        &["test-email", "--to", "other@example.com"],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("latest snapshot of camera driveway"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("✔ sent; the server answered: 250 2.0.0 OK"),
        "{out}"
    );
    let mails = rig.smtp.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(mails[0].rcpt_to, vec!["other@example.com"]);
    assert!(mails[0].text().contains("Content-Type: image/jpeg"));
}

#[tokio::test]
async fn test_email_without_camera_uses_a_generated_image_and_reports_refusal() {
    let smtp = smtp::start().await;
    let rig = rig_with(smtp).await;
    let out = snapmail(&rig.config(), &["test-email"], &[]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("a generated test image"), "{out}");
    rig.smtp.wait_for_messages(1, Duration::from_secs(5)).await;

    let out = snapmail(
        &rig.config(),
        &["test-email"],
        &[("SNAPMAIL__SMTP__PASSWORD", "correct-horse-account")],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("✘ not sent: 534 5.7.9"), "{out}");
}

#[tokio::test]
async fn mqtt_broker_not_listening_is_named() {
    let rig = rig().await;
    let closed = smtp::closed_port();
    let cfg = with(
        &config(&rig),
        &format!("url: {}", rig.broker.url()),
        &format!("url: mqtt://127.0.0.1:{closed}"),
    );
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let mqtt = out.line("✘", "mqtt connect");
    assert!(
        mqtt.contains("nothing listens on 127.0.0.1") && mqtt.contains("check mqtt.url"),
        "{out}"
    );
    // SMTP was still checked in full.
    out.line("✔", "smtp auth");
}

/// `mqtts://` goes through the TLS handshake with snapmail's own rustls configuration; a
/// self-signed broker certificate (CA:TRUE, as `openssl req -x509` makes it) stops it there
/// with the fix in words, and once that certificate is in `mqtt.ca_file` the same broker is
/// trusted.
#[tokio::test]
async fn mqtt_tls_with_a_self_signed_broker_certificate_needs_mqtt_ca_file() {
    let cert = TestCa::self_signed(std::net::Ipv4Addr::LOCALHOST.into());
    let broker = mosquitto::start_tls(&cert.chain_pem(), &cert.key_pem());
    let tls_port = broker.tls_port.expect("TLS listener");
    let rig = Rig {
        broker,
        smtp: smtp::start().await,
        frigate: http::start(latest_jpg(images::camera_jpeg(640, 360, 85))).await,
    };
    let cfg = with(
        &config(&rig),
        &format!("url: {}", rig.broker.url()),
        &format!("url: mqtts://127.0.0.1:{tls_port}"),
    );
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let mqtt = out.line("✘", "mqtt connect");
    assert!(
        mqtt.contains(&format!("TLS to 127.0.0.1:{tls_port} failed"))
            && mqtt.contains("invalid peer certificate")
            && mqtt.contains("not from a public CA: set mqtt.ca_file"),
        "{out}"
    );
    // The broker's side: the client ended the handshake with a TLS alert (OpenSSL logs
    // `sslv3 alert certificate unknown`).
    crate::support::wait::wait_until("the broker logs the client's TLS alert", T, || {
        let log = rig.broker.log();
        log.contains("OpenSSL Error") && log.contains(" alert ")
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("broker.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let pinned = with(
        &cfg,
        "mqtt:\n",
        &format!("mqtt:\n  ca_file: {}\n", ca_file.display()),
    );
    let out = doctor(&pinned, &[], &[]).await;
    let line = out.line("✔", "mqtt connect");
    assert!(line.contains("over TLS (trusting mqtt.ca_file)"), "{out}");
    out.line("✔", "mqtt subscribe");
}

/// Frigate's authenticated port: `latest.jpg` only with the Bearer token `POST /api/login`
/// hands out for mailer / s3cret.
fn frigate_with_login(
    jpeg: Vec<u8>,
) -> impl Fn(&http::Request) -> Response + Send + Sync + 'static {
    move |req: &http::Request| {
        if req.method == "POST" && req.path == "/api/login" {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            return if body["user"] == "mailer" && body["password"] == "s3cret" {
                Response::json(200, "{}")
                    .with_header("Set-Cookie", "frigate_token=tok1; Path=/; HttpOnly")
            } else {
                Response::json(401, r#"{"message": "Login failed"}"#)
            };
        }
        if req.header("authorization") != Some("Bearer tok1") {
            return Response::status(401, "Unauthorized");
        }
        match req.path_only() {
            "/api/driveway/latest.jpg" => Response::jpeg(jpeg.clone()),
            _ => Response::json(404, r#"{"success": false}"#),
        }
    }
}

#[tokio::test]
async fn snapshot_step_logs_in_to_frigate_like_the_daemon() {
    let rig = Rig {
        broker: mosquitto::start(),
        smtp: smtp::start().await,
        frigate: http::start(frigate_with_login(images::camera_jpeg(1280, 720, 85))).await,
    };
    let login = "  username: mailer\n  password: s3cret\nrate_limit:\n";
    let cfg = with(
        &config(&rig),
        "rate_limit:\n",
        &format!("  version: \"0.15\"\n{login}"),
    );
    let out = doctor(&cfg, &[], &[]).await;
    let snap = out.line("✔", "snapshot driveway");
    assert!(snap.contains("200") && snap.contains("1280×720"), "{out}");

    let cfg = with(&cfg, "password: s3cret", "password: wrong");
    let out = doctor(&cfg, &[], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    let snap = out.line("✘", "snapshot driveway");
    assert!(
        snap.contains("refused the login") && snap.contains("frigate.password"),
        "{out}"
    );
    assert!(!out.stdout.contains("wrong"), "{out}");
}

#[tokio::test]
async fn check_reports_every_problem_and_which_are_only_missing_secret_files() {
    // The shipped example, as a user copies it before creating the secret files.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hikvision.yaml"),
    )
    .unwrap();
    let out = snapmail(&example, &["check"], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("4 problems in the configuration"),
        "{out}"
    );
    let missing = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot read secret file") && l.ends_with("(missing secret file)"))
        .count();
    assert_eq!(missing, 4, "{out}");
    assert!(out.stderr.contains("! only missing secret files"), "{out}");

    // Real mistakes are listed beside the missing file, in one run.
    let broken = format!("{example}snapshot:\n  jpeg_quality: 0\ndaily_limit: 0\n");
    let out = snapmail(&broken, &["check"], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("6 problems in the configuration"),
        "{out}"
    );
    assert!(out.stderr.contains("snapshot.jpeg_quality"), "{out}");
    assert!(
        out.stderr.contains("daily_limit: must be at least 1"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("4 of these are missing secret files; the others need fixing too"),
        "{out}"
    );
}

#[tokio::test]
async fn a_mistyped_app_password_or_address_is_named_before_gmail_is_asked() {
    let gmail = |password: &str, to: &str| {
        format!(
            "smtp:\n  host: smtp.gmail.com\n  username: cam@gmail.com\n  password: \"{password}\"\n  to: [{to}]\n"
        )
    };
    // Fifteen letters: one was lost when copying.
    let out = snapmail(
        &gmail("abcd efgh ijkl mno", "me@gmail.com"),
        &["check"],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("smtp.password: 15 letters")
            && out.stderr.contains("exactly 16")
            && out.stderr.contains("lost"),
        "{out}"
    );
    assert!(!out.stderr.contains("abcd"), "{out}");
    // An account password.
    let out = snapmail(&gmail("Tr0ub4dor&3", "me@gmail.com"), &["check"], &[]).await;
    assert!(
        out.stderr.contains("not a Gmail app password") && out.stderr.contains("534 5.7.9"),
        "{out}"
    );
    assert!(!out.stderr.contains("Tr0ub4dor"), "{out}");
    // An address without its top-level domain.
    let out = snapmail(&gmail("abcd efgh ijkl mnop", "me@gmail"), &["check"], &[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("smtp.to") && out.stderr.contains("did you mean me@gmail.com?"),
        "{out}"
    );
    // Doctor says the same, as its config step.
    let out = doctor(&gmail("abcd efgh ijkl mno", "me@gmail.com"), &[], &[]).await;
    assert!(out.line("✘", "config").contains("15 letters"), "{out}");
}
