//! End to end with real parts: Mosquitto, the TLS SMTP test server answering like Gmail, a
//! Frigate-like HTTP server with a real 4K JPEG, and the real `snapmail` binary.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::images;
use crate::support::mosquitto;
use crate::support::rig::Rig;
use crate::support::smtp::{ReceivedMail, SmtpServer};
use mail_parser::MimeHeaders;

const NEW: &str = include_str!("fixtures/frigate-events-new-0.14.json");
const UPDATE: &str = include_str!("fixtures/frigate-events-update-0.14-subLabel-face.json");
const END_OTHER_CAMERA: &str = include_str!("fixtures/frigate-events-end-0.15.json");
const T: Duration = Duration::from_secs(30);

/// Mosquitto, the SMTP server and a Frigate serving a 4K camera frame.
async fn rig() -> Rig {
    crate::support::rig::start(3840, 2160).await
}

/// Every key of the documented example, pointed at the test servers.
fn config(r: &Rig, port: u16, security: &str, password: &str) -> String {
    format!(
        r#"
mqtt:
  url: {mqtt}
  client_id: snapmail-test
smtp:
  host: localhost
  port: {port}
  security: {security}
  username: cam@example.com
  password: "{password}"
  from: "Cameras <cam@example.com>"
  to: [me@example.com]
  ca_file: {ca}
  timeout: 20s
frigate:
  url: {frigate}
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
outbox:
  dir: ./spool
  retry_min: 1s
  retry_max: 2s
  credentials_pause: 1h
"#,
        mqtt = r.broker.url(),
        ca = r.smtp.ca_file.display(),
        frigate = r.frigate.url(),
    )
}

/// A second event on the driveway camera (new id), inside its cooldown.
fn second_driveway_event() -> String {
    NEW.replace("1731254400.123456-k3v9qz", "1731254999.000001-zzzzzz")
}

/// The inline JPEG of a received mail, with its Content-ID.
fn inline_jpeg(mail: &ReceivedMail) -> (Vec<u8>, String) {
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses as MIME");
    for part in msg.parts.iter() {
        let ct = part.content_type();
        if ct.is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("jpeg")) {
            let cid = part
                .content_id()
                .expect("the picture has a Content-ID")
                .to_owned();
            return (part.contents().to_vec(), cid);
        }
    }
    panic!(
        "no image/jpeg part in:\n{}",
        String::from_utf8_lossy(&mail.data)
    );
}

async fn one_mail_per_event(port_of: fn(&SmtpServer) -> u16, security: &str) {
    let r = rig().await;
    // The app password as Google shows it, with spaces: snapmail strips them.
    let d = Daemon::start(
        Some(&config(
            &r,
            port_of(&r.smtp),
            security,
            "abcd efgh ijkl mnop",
        )),
        &[],
    );
    d.wait_for_log("mqtt: subscribed", T).await;

    r.broker
        .publish("frigate/events", NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let mail = &mails[0];
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("driveway: person (73%)")
    );
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Cameras <cam@example.com>")
    );
    assert_eq!(mail.header("To").as_deref(), Some("me@example.com"));
    assert_eq!(mail.rcpt_to, vec!["me@example.com".to_string()]);
    assert!(mail.message_id().is_some_and(|m| m.ends_with("@snapmail>")));
    let (jpeg, cid) = inline_jpeg(mail);
    let (w, h) = images::decode_dims(&jpeg);
    assert_eq!((w, h), (1280, 720), "fits 1280x1280 keeping 16:9");
    let parsed = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .unwrap();
    let html = parsed.body_html(0).expect("an HTML part");
    let text = parsed.body_text(0).expect("a plain-text part");
    assert!(
        html.contains(&format!("cid:{cid}")),
        "the HTML references the inline image: {html}"
    );
    for body in [&html, &text] {
        assert!(body.contains("driveway_entrance"), "{body}");
        assert!(
            body.contains("explore?event_id=1731254400.123456-k3v9qz"),
            "{body}"
        );
    }
    assert_eq!(
        r.frigate.requests()[0].path_only(),
        "/api/events/1731254400.123456-k3v9qz/snapshot.jpg"
    );

    // Later messages for the same event id add nothing; a new event on the same camera inside
    // its cooldown is suppressed; another camera mails. The garden mail arriving proves the
    // earlier messages were already decided (the policy stage handles messages in order).
    r.broker
        .publish("frigate/events", UPDATE.as_bytes(), false)
        .await;
    r.broker
        .publish("frigate/events", second_driveway_event().as_bytes(), false)
        .await;
    r.broker
        .publish("frigate/events", END_OTHER_CAMERA.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("garden: person (85%)")
    );
    d.wait_for_log(
        "suppressed by cooldown; next mail for driveway may go in",
        T,
    )
    .await;
    assert_eq!(r.smtp.messages().len(), 2, "exactly two mails");
    assert_eq!(
        d.count_log("event person (73%): mailing"),
        1,
        "{}",
        d.logs()
    );
    // Both mails went through one authenticated session (the pool reuses it).
    assert_eq!(r.smtp.auth_attempts(), 1, "{}", r.smtp.transcript());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_event_mails_once_over_starttls_587_style() {
    one_mail_per_event(|s| s.starttls_port, "starttls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_event_mails_once_over_implicit_tls_465_style() {
    one_mail_per_event(|s| s.tls_port, "tls").await;
}

async fn login_refused(password: &str, code: &str, hint: &str) {
    let r = rig().await;
    let mut d = Daemon::start(
        Some(&config(&r, r.smtp.starttls_port, "starttls", password)),
        &[],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    r.broker
        .publish("frigate/events", NEW.as_bytes(), false)
        .await;
    d.wait_for_log("LOGIN REFUSED", T).await;
    let logs = d.logs();
    assert!(logs.contains(code), "{logs}");
    assert!(logs.contains(hint), "{logs}");
    assert!(
        !logs.contains(password),
        "the password never appears in logs"
    );
    assert!(d.try_exit().is_none(), "the daemon keeps running: {logs}");
    assert!(r.smtp.messages().is_empty());
    // The mail is kept for when the password is fixed.
    let spooled = std::fs::read_dir(d.dir().join("spool"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "mail"))
        .count();
    assert_eq!(spooled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_password_gets_the_534_app_password_hint() {
    login_refused(
        "correct-horse-account",
        "534 5.7.9",
        "create an app password",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_password_gets_the_535_hint() {
    login_refused(
        "wrongwrongwrongw",
        "535 5.7.8",
        "wrong, mistyped or revoked",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_defaults_write_eml_previews() {
    let port = crate::support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start(None, &[("SNAPMAIL__MQTT__LISTEN", listen.as_str())]);
    d.wait_for_log("running the embedded MQTT broker", T).await;
    d.wait_for_log("preview mode", T).await;
    d.wait_for_log("mqtt: subscribed", T).await;
    mosquitto::publish_to(port, "frigate/events", NEW.as_bytes(), false).await;
    let outbox = d.dir().join("outbox");
    crate::support::wait::wait_until("an .eml file in ./outbox", T, || {
        std::fs::read_dir(&outbox)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .unwrap_or(false)
    })
    .await;
    let eml = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(eml).unwrap();
    assert!(text.contains("Subject: driveway: person (73%)"), "{text}");
    // No Frigate runs here: the mail still goes out and says why there is no picture.
    assert!(text.contains("No picture:"), "{text}");
}

const LPR: &str = include_str!("fixtures/frigate-events-update-0.16-lpr.json");

/// The 0.16 plate fixture with another event id and plate.
fn lpr_event(id: &str, plate: &str) -> String {
    LPR.replace("1752930112.504133-x2m8ha", id)
        .replace("\"KX21ZPT\"", &format!("{plate:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licence_plates_show_in_the_mail_and_sub_label_rules_match_them() {
    let r = crate::support::rig::start(1280, 720).await;
    let config = format!(
        "{}cameras:\n  street:\n    sub_labels: [kx21zpt]\n    cooldown: 1h\npriority:\n  - sub_labels: [KX21ZPT]\n",
        r.config()
    );
    let d = Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;

    // Before the plate is read, the car is filtered by sub_labels…
    let unread = LPR.replacen(
        "\"recognized_license_plate\": [\n      \"KX21ZPT\",\n      0.93\n    ]",
        "\"recognized_license_plate\": null",
        1,
    );
    let unread = unread.replace("\"type\": \"update\"", "\"type\": \"new\"");
    assert!(unread.matches("\"recognized_license_plate\": null").count() >= 2);
    r.broker
        .publish("frigate/events", unread.as_bytes(), false)
        .await;
    d.wait_for_log("filtered by sub_labels: \"none\"", T).await;
    // …the update that carries it mails.
    r.broker
        .publish("frigate/events", LPR.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(&mails[0].data)
        .unwrap();
    assert_eq!(parsed.subject(), Some("street: car KX21ZPT (87%)"));
    let text = parsed.body_text(0).unwrap();
    assert!(text.contains("Plate: KX21ZPT"), "{text}");
    assert!(text.contains("Object: car"), "{text}");
    let html = parsed.body_html(0).unwrap();
    assert!(
        html.contains(">Plate</th>") && html.contains("KX21ZPT"),
        "{html}"
    );

    // The same plate again within the camera's hour of cooldown: the priority rule's
    // sub_labels match the plate, so it mails at once.
    r.broker
        .publish(
            "frigate/events",
            lpr_event("1752930400.100000-second", "KX21ZPT").as_bytes(),
            false,
        )
        .await;
    r.smtp.wait_for_messages(2, T).await;
    d.wait_for_log("mailing (priority rule", T).await;
    // Another plate is not in sub_labels.
    r.broker
        .publish(
            "frigate/events",
            lpr_event("1752930500.100000-third", "ZZ99ZZZ").as_bytes(),
            false,
        )
        .await;
    d.wait_for_log("filtered by sub_labels: \"ZZ99ZZZ\"", T)
        .await;
    assert_eq!(r.smtp.messages().len(), 2, "{}", d.logs());
}
