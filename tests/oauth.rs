//! XOAUTH2 against a local OAuth token endpoint and the Gmail-like SMTP server: tokens are
//! refreshed once and reused, refreshed again when expired, refreshed once more when the
//! server refuses one, and a revoked refresh token is reported with its fix.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::support::http::{self, HttpServer, Response};
use crate::support::smtp::{self, SmtpServer};
use lettre::Message;
use snapmail::config::Config;
use snapmail::mail::classify::HINT_OAUTH_REFUSED;
use snapmail::mail::{Class, Mailer};

const VALID: &str = "ya29.valid-token";

fn token(access: &str, expires_in: u64) -> Response {
    Response::json(
        200,
        &format!(
            r#"{{"access_token": "{access}", "expires_in": {expires_in}, "scope": "https://mail.google.com/", "token_type": "Bearer"}}"#
        ),
    )
}

fn revoked() -> Response {
    Response::json(
        400,
        r#"{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"#,
    )
}

/// A token endpoint answering with `script` in order, then `then` for ever after.
async fn token_endpoint(script: Vec<Response>, then: Response) -> HttpServer {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    http::start(move |_req: &http::Request| {
        script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| then.clone())
    })
    .await
}

fn yaml(smtp: &SmtpServer, endpoint: &HttpServer, secrets: &str) -> String {
    format!(
        r#"mqtt:
  url: mqtt://127.0.0.1:1
smtp:
  host: localhost
  port: {port}
  username: cam@example.com
  to: [me@example.com]
  ca_file: {ca}
  timeout: 20s
  auth: oauth2
  oauth2:
    client_id: 1234-abc.apps.googleusercontent.com
    token_url: {url}/token
{secrets}"#,
        port = smtp.starttls_port,
        ca = smtp.ca_file.display(),
        url = endpoint.url(),
    )
}

const INLINE_SECRETS: &str =
    "    client_secret: GOCSPX-client-secret\n    refresh_token: \"1//0g-refresh\"\n";

fn load(text: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    snapmail::config::load_from(Some(&path), Some(HashMap::new())).map_err(|e| e.to_string())
}

fn mailer(smtp: &SmtpServer, endpoint: &HttpServer) -> Mailer {
    let cfg = load(&yaml(smtp, endpoint, INLINE_SECRETS)).unwrap();
    Mailer::new(cfg.smtp.as_ref().unwrap()).unwrap()
}

async fn send(
    mailer: &Mailer,
    n: usize,
) -> Result<snapmail::mail::Accepted, snapmail::mail::Failure> {
    let msg = Message::builder()
        .from("cam@example.com".parse().unwrap())
        .to("me@example.com".parse().unwrap())
        .subject(format!("test {n}"))
        .body(format!("body {n}"))
        .unwrap();
    mailer.send_raw(msg.envelope(), &msg.formatted()).await
}

fn body(req: &http::Request) -> String {
    String::from_utf8_lossy(&req.body).into_owned()
}

#[tokio::test]
async fn token_is_fetched_once_and_reused_until_it_expires() {
    let smtp = smtp::start().await;
    let endpoint = token_endpoint(vec![], token(VALID, 3599)).await;
    let m = mailer(&smtp, &endpoint);
    send(&m, 1).await.unwrap();
    send(&m, 2).await.unwrap();
    assert_eq!(smtp.messages().len(), 2);
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 1, "one refresh for two sends");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path_only(), "/token");
    let b = body(&reqs[0]);
    for part in [
        "grant_type=refresh_token",
        "client_id=1234-abc.apps.googleusercontent.com",
        "client_secret=GOCSPX-client-secret",
        "refresh_token=1%2F%2F0g-refresh",
    ] {
        assert!(b.contains(part), "{part} missing from {b}");
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_before_the_next_send() {
    let smtp = smtp::start().await;
    // expires_in 0: the token is stale as soon as it arrives.
    let endpoint = token_endpoint(vec![], token(VALID, 0)).await;
    let m = mailer(&smtp, &endpoint);
    send(&m, 1).await.unwrap();
    send(&m, 2).await.unwrap();
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(endpoint.request_count(), 2, "a refresh per send");
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_send_succeeds() {
    let smtp = smtp::start().await;
    let endpoint = token_endpoint(vec![token("ya29.stale", 3599)], token(VALID, 3599)).await;
    let m = mailer(&smtp, &endpoint);
    let accepted = send(&m, 1).await.unwrap();
    assert_eq!(accepted.code, 250);
    assert_eq!(endpoint.request_count(), 2);
    assert_eq!(smtp.auth_attempts(), 2);
    assert!(
        smtp.transcript().contains("AUTH XOAUTH2"),
        "{}",
        smtp.transcript()
    );
}

#[tokio::test]
async fn a_token_refused_twice_is_reported_after_one_refresh() {
    let smtp = smtp::start().await;
    let endpoint = token_endpoint(vec![], token("ya29.wrong", 3599)).await;
    let m = mailer(&smtp, &endpoint);
    let failure = send(&m, 1).await.unwrap_err();
    assert_eq!(failure.class, Class::Credentials, "{failure}");
    assert_eq!(failure.hint, HINT_OAUTH_REFUSED, "{failure}");
    assert_eq!(endpoint.request_count(), 2, "exactly one forced refresh");
    assert_eq!(smtp.auth_attempts(), 2);
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_revoked_refresh_token_is_reported_with_the_fix() {
    let smtp = smtp::start().await;
    let endpoint = token_endpoint(vec![], revoked()).await;
    let m = mailer(&smtp, &endpoint);
    let failure = send(&m, 1).await.unwrap_err();
    assert_eq!(failure.class, Class::Credentials, "{failure}");
    let text = failure.to_string();
    assert!(text.contains("smtp.oauth2.refresh_token"), "{text}");
    assert!(
        text.contains("expired or revoked") && text.contains("create a new one"),
        "{text}"
    );
    assert!(
        !text.contains("1//0g-refresh") && !text.contains("GOCSPX"),
        "{text}"
    );
    assert_eq!(smtp.connections(), 0, "no login without a token");
}

#[tokio::test]
async fn secrets_come_from_files_and_missing_ones_name_the_key() {
    let smtp = smtp::start().await;
    let endpoint = token_endpoint(vec![], token(VALID, 3599)).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    let refresh = dir.path().join("refresh_token");
    std::fs::write(&secret, "GOCSPX-from-file\n").unwrap();
    std::fs::write(&refresh, "1//0g-from-file\n").unwrap();
    let files = format!(
        "    client_secret_file: {}\n    refresh_token_file: {}\n",
        secret.display(),
        refresh.display()
    );
    let cfg = load(&yaml(&smtp, &endpoint, &files)).unwrap();
    let m = Mailer::new(cfg.smtp.as_ref().unwrap()).unwrap();
    send(&m, 1).await.unwrap();
    let b = body(&endpoint.requests()[0]);
    assert!(b.contains("client_secret=GOCSPX-from-file&"), "{b}");
    assert!(b.contains("refresh_token=1%2F%2F0g-from-file"), "{b}");

    let e = load(&yaml(&smtp, &endpoint, "    client_secret: x\n")).unwrap_err();
    assert!(e.contains("smtp.oauth2.refresh_token: not set"), "{e}");
    let e = load(&yaml(
        &smtp,
        &endpoint,
        &format!("{INLINE_SECRETS}    scope: x\n"),
    ))
    .unwrap_err();
    assert!(e.contains("scope"), "{e}");
}

#[tokio::test]
async fn doctor_checks_the_xoauth2_path() {
    let smtp = smtp::start().await;
    let broker = crate::support::mosquitto::start();
    let good = token_endpoint(vec![], token(VALID, 3599)).await;
    let config = yaml(&smtp, &good, INLINE_SECRETS).replace("mqtt://127.0.0.1:1", &broker.url());
    let crate::support::cli::Output {
        code, stdout: out, ..
    } = crate::support::cli::doctor(&config, &[], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✔ oauth2 token: access token from"), "{out}");
    assert!(out.contains("XOAUTH2"), "{out}");
    assert!(
        out.contains("✔ smtp auth: logged in as cam@example.com with the XOAUTH2 access token"),
        "{out}"
    );

    let bad = token_endpoint(vec![], revoked()).await;
    let config = yaml(&smtp, &bad, INLINE_SECRETS).replace("mqtt://127.0.0.1:1", &broker.url());
    let crate::support::cli::Output {
        code, stdout: out, ..
    } = crate::support::cli::doctor(&config, &[], &[]).await;
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("✘ oauth2 token:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("invalid_grant") && line.contains("create a new refresh token"),
        "{out}"
    );
    assert!(out.contains("- smtp auth: login not tried"), "{out}");
}
