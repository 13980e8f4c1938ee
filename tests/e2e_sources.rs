//! Every source end to end: Mosquitto, the TLS SMTP server answering like Gmail, local HTTP
//! servers standing in for Frigate and cameras, and the real `snapmail` binary configured
//! with a `sources:` list.

use std::sync::atomic::{AtomicUsize, Ordering};

use mail_parser::MimeHeaders;
use std::sync::{Arc, Mutex};

use crate::support::http::{self, Request, Response};
use crate::support::images;
use crate::support::rig::{self, Rig, T};
use crate::support::smtp::ReceivedMail;
use crate::support::wait::wait_until;

const REVIEW_NEW: &str = include_str!("fixtures/frigate-reviews-new.json");
const REVIEW_UPGRADE: &str =
    include_str!("fixtures/frigate-reviews-update-detection-to-alert.json");
const EVENT_NEW: &str = include_str!("fixtures/frigate-events-new-0.14.json");
const PICTURE_ERROR: &str = include_str!("fixtures/hikvision-picture-error.xml");

/// The parsed mail: its inline JPEG (if any) and its plain-text body.
fn open(mail: &ReceivedMail) -> (Option<Vec<u8>>, String) {
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses as MIME");
    let jpeg = msg.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        (ct.ctype() == "image" && ct.subtype() == Some("jpeg")).then(|| part.contents().to_vec())
    });
    let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    (jpeg, text)
}

fn with_sources(r: &Rig, sources: &str) -> String {
    format!("{}sources:\n{sources}\n", r.config())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_review_alert_mails_once_with_its_detection_snapshot() {
    let r = rig::start(1920, 1080).await;
    let d = crate::support::daemon::Daemon::start(
        Some(&with_sources(&r, "  - kind: frigate_reviews")),
        &[],
    );
    d.wait_for_log("mqtt: subscribed", T).await;

    // A detection first (not mailed by default), then the same review upgraded to an alert.
    let detection = REVIEW_UPGRADE
        .replacen("\"update\"", "\"new\"", 1)
        .replace("\"severity\": \"alert\"", "\"severity\": \"detection\"");
    r.broker
        .publish("frigate/reviews", detection.as_bytes(), false)
        .await;
    r.broker
        .publish("frigate/reviews", REVIEW_UPGRADE.as_bytes(), false)
        .await;
    r.broker
        .publish("frigate/reviews", REVIEW_UPGRADE.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("garden: person, cat")
    );
    let (jpeg, text) = open(&mails[0]);
    assert_eq!(images::decode_dims(&jpeg.expect("a picture")), (1280, 720));
    assert!(text.contains("lawn"), "{text}");
    assert!(
        text.contains("review?id=1739870998.517302-b5ne0u"),
        "{text}"
    );
    assert_eq!(
        r.frigate.requests()[0].path_only(),
        "/api/events/1739871002.771935-p0d4wn/snapshot.jpg",
        "the snapshot of the review's first detection"
    );

    // A new alert on another camera mails; its end adds nothing.
    r.broker
        .publish("frigate/reviews", REVIEW_NEW.as_bytes(), false)
        .await;
    let end = REVIEW_NEW.replacen("\"new\"", "\"end\"", 1);
    r.broker
        .publish("frigate/reviews", end.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("driveway: person")
    );
    d.wait_for_log("review 1731254400.923611-r7tq2c was already reported", T)
        .await;
    assert_eq!(
        d.count_log("is a detection; only alert mail"),
        1,
        "{}",
        d.logs()
    );
    assert_eq!(r.smtp.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_topic_mails_the_payload_and_ignores_the_retained_replay() {
    let r = rig::start(64, 64).await;
    let old = images::camera_jpeg(1920, 1080, 92);
    let live = images::camera_jpeg(2560, 1440, 92);
    assert!(
        live.len() >= 200 * 1024,
        "a big payload: {} bytes",
        live.len()
    );
    // Frigate retains the last snapshot: the broker replays it when snapmail subscribes.
    r.broker
        .publish("frigate/driveway/person/snapshot", &old, true)
        .await;
    let d = crate::support::daemon::Daemon::start(
        Some(&with_sources(&r, "  - kind: frigate_snapshot")),
        &[],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    d.wait_for_log("retained snapshot of driveway/person", T)
        .await;

    r.broker
        .publish("frigate/garden/person/snapshot", &live, true)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("garden: person")
    );
    let (jpeg, _) = open(&mails[0]);
    assert_eq!(images::decode_dims(&jpeg.expect("a picture")), (1280, 720));
    assert_eq!(
        r.frigate.request_count(),
        0,
        "the picture came with the message"
    );
    assert_eq!(r.smtp.messages().len(), 1, "the replay did not mail");
}

/// A picture over `max_bytes` is not mailed; the first one on each topic (the retained
/// replay too) says so at warn level, naming the key and the size; the rest stay at debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_snapshot_is_logged_once_per_topic_naming_max_bytes() {
    let r = rig::start(64, 64).await;
    let big = images::camera_jpeg(2560, 1440, 92);
    assert!(big.len() > 150_000, "{} bytes", big.len());
    r.broker
        .publish("frigate/driveway/person/snapshot", &big, true)
        .await;
    let d = crate::support::daemon::Daemon::start(
        Some(&with_sources(
            &r,
            "  - kind: frigate_snapshot\n    max_bytes: 150000",
        )),
        &[],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    let warning = format!(
        "pictures on frigate/driveway/person/snapshot are not mailed: this one is {} bytes, over sources[0].max_bytes (150000); raise sources[0].max_bytes",
        big.len()
    );
    d.wait_for_log(&warning, T).await;
    for _ in 0..2 {
        r.broker
            .publish("frigate/driveway/person/snapshot", &big, false)
            .await;
    }
    r.broker
        .publish("frigate/garden/person/snapshot", &big, false)
        .await;
    // Messages are decoded in order: once this one mails, the ones before were seen.
    r.broker
        .publish(
            "frigate/porch/person/snapshot",
            &images::camera_jpeg(320, 240, 80),
            false,
        )
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails[0].header("Subject").as_deref(), Some("porch: person"));
    assert_eq!(d.count_log("are not mailed"), 2, "{}", d.logs());
    assert_eq!(
        d.count_log("pictures on frigate/garden/person/snapshot are not mailed"),
        1
    );
    assert!(
        d.logs()
            .lines()
            .any(|l| l.contains(&warning) && l.contains("WARN")),
        "{}",
        d.logs()
    );
    assert_eq!(r.smtp.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hikvision_bridge_event_fetches_the_picture_with_digest_auth() {
    let r = rig::start(64, 64).await;
    let picture = images::camera_jpeg(1280, 720, 85);
    let camera = http::start(http::digest_protected(
        "admin",
        "cam-pass",
        "IP Camera(C1234)",
        move |req: &Request| match req.path.as_str() {
            "/ISAPI/Streaming/channels/101/picture" => Response::jpeg(picture.clone()),
            // Hikvision reports failures as 200 with an XML body.
            _ => Response::new(200, "application/xml", PICTURE_ERROR.as_bytes().to_vec()),
        },
    ))
    .await;
    let secret = d_file("cam-pass\n");
    let sources = format!(
        r#"  - kind: hikvision_bridge
    topic: camera-alerts/+/+
    cameras:
      driveway: {{url: "{url}", channel: 101, username: admin, password_file: {file}}}
      gate: {{url: "{url}", username: admin, password: wrong-password}}
      yard: {{url: "{url}", channel: 201, username: admin, password: cam-pass}}"#,
        url = camera.url(),
        file = secret.path().display()
    );
    let d = crate::support::daemon::Daemon::start(Some(&with_sources(&r, &sources)), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;

    r.broker
        .publish("camera-alerts/alarmserver", br#"{ "status": "up" }"#, false)
        .await;
    r.broker
        .publish("camera-alerts/driveway/VMD", b"Motion alarm", false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("driveway: motion")
    );
    let (jpeg, _) = open(&mails[0]);
    assert_eq!(images::decode_dims(&jpeg.expect("a picture")), (1280, 720));
    let reqs = camera.requests();
    assert_eq!(reqs.len(), 2, "challenge, then the answer");
    assert!(reqs[1]
        .header("authorization")
        .unwrap()
        .starts_with("Digest "));

    // Wrong password: the mail goes without a picture; the log names the keys to fix.
    r.broker
        .publish(
            "camera-alerts/gate/linedetection",
            b"linedetection alarm",
            false,
        )
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let (jpeg, text) = open(&mails[1]);
    assert!(jpeg.is_none());
    assert!(text.contains("refused the login"), "{text}");
    d.wait_for_log(
        "check sources[0].cameras.gate.username and sources[0].cameras.gate.password",
        T,
    )
    .await;

    // An XML error body with status 200 is an error quoting the camera.
    r.broker
        .publish(
            "camera-alerts/yard/fielddetection",
            b"fielddetection alarm",
            false,
        )
        .await;
    let mails = r.smtp.wait_for_messages(3, T).await;
    let (jpeg, text) = open(&mails[2]);
    assert!(jpeg.is_none());
    assert!(text.contains("\"Device Error\" (deviceError)"), "{text}");
    d.wait_for_log(
        "the camera answered with an error instead of a picture: \"Device Error\"",
        T,
    )
    .await;
    let logs = d.logs();
    assert!(
        !logs.contains("cam-pass") && !logs.contains("wrong-password"),
        "{logs}"
    );
}

fn d_file(content: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), content).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_off_topic_mails_once_per_rising_edge() {
    let r = rig::start(64, 64).await;
    let nvr = http::start({
        let jpeg = images::camera_jpeg(800, 600, 80);
        move |req: &Request| {
            if req.path_only().starts_with("/image/") {
                Response::jpeg(jpeg.clone())
            } else {
                Response::status(404, "no")
            }
        }
    })
    .await;
    let sources = format!(
        "  - kind: mqtt\n    topic: cameras/+/motion\n    snapshot:\n      url: \"{}/image/{{camera}}\"",
        nvr.url()
    );
    // A retained ON from before: a replay, not a new edge.
    r.broker.publish("cameras/porch/motion", b"ON", true).await;
    let d = crate::support::daemon::Daemon::start(
        Some(&with_sources(&r, &sources)),
        &[("SNAPMAIL__RATE_LIMIT__COOLDOWN", "0s")],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    d.wait_for_log("retained message: a replay", T).await;
    for payload in ["ON", "on", "OFF", "1", "true", "0", "off", "ON"] {
        r.broker
            .publish("cameras/driveway/motion", payload.as_bytes(), false)
            .await;
    }
    r.broker.publish("cameras/porch/motion", b"ON", false).await;
    r.broker
        .publish("cameras/porch/motion", b"OFF", false)
        .await;
    r.broker.publish("cameras/porch/motion", b"ON", false).await;
    let mails = r.smtp.wait_for_messages(4, T).await;
    // Pictures are fetched concurrently, so mails may arrive in any order.
    let mut subjects: Vec<_> = mails.iter().filter_map(|m| m.header("Subject")).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            "driveway: motion",
            "driveway: motion",
            "driveway: motion",
            "porch: motion"
        ]
    );
    assert!(
        mails.iter().all(|m| open(m).0.is_some()),
        "pictures from the URL template"
    );
    d.wait_for_log("porch: ON is not a rising edge", T).await;
    wait_until("four fetches", T, || nvr.request_count() == 4).await;
    let mut paths: Vec<_> = nvr.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/image/driveway",
            "/image/driveway",
            "/image/driveway",
            "/image/porch"
        ]
    );
    assert_eq!(r.smtp.messages().len(), 4);
}

/// amcrest2mqtt publishes `{"Code": "VideoMotion", "action": "Start"|"Stop"}` on
/// `amcrest2mqtt/<serial>/event`, every message retained. With `on_values: [Start]` and
/// `off_values: [Stop]` only the start mails; the picture comes from the camera's
/// `snapshot.cgi` with Digest auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amcrest2mqtt_start_mails_and_stop_does_not() {
    const FIXTURE: &str = include_str!("fixtures/amcrest2mqtt.txt");
    let lines: Vec<(&str, &str)> = FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split('\t');
            (parts.next().unwrap(), parts.next().unwrap().trim())
        })
        .collect();
    let event = |action: &str| {
        lines
            .iter()
            .find(|(t, p)| t.ends_with("/event") && p.contains(action))
            .copied()
            .unwrap()
    };
    let (topic, stop) = event("\"Stop\"");
    let r = rig::start(64, 64).await;
    let camera = http::start(http::digest_protected(
        "admin",
        "cam-pass",
        "Login to AMC",
        {
            let jpeg = images::camera_jpeg(640, 480, 80);
            move |req: &Request| match req.path.as_str() {
                "/cgi-bin/snapshot.cgi?channel=1" => Response::jpeg(jpeg.clone()),
                _ => Response::status(404, "no"),
            }
        },
    ))
    .await;
    let sources = format!(
        r#"  - kind: mqtt
    topic: amcrest2mqtt/+/event
    json: {{state: /action, label: /Code}}
    on_values: [Start]
    off_values: [Stop]
    snapshot: {{url: "{}/cgi-bin/snapshot.cgi?channel=1", username: admin, password: cam-pass}}"#,
        camera.url()
    );
    // The broker holds the last event (a Stop) from before snapmail started.
    r.broker.publish(topic, stop.as_bytes(), true).await;
    let d = crate::support::daemon::Daemon::start(
        Some(&with_sources(&r, &sources)),
        &[("SNAPMAIL__RATE_LIMIT__COOLDOWN", "0s")],
    );
    d.wait_for_log("mqtt: subscribed", T).await;
    d.wait_for_log("retained message: a replay", T).await;

    // Every line of the fixture, retained as amcrest2mqtt sends them.
    for (t, payload) in &lines {
        r.broker.publish(t, payload.as_bytes(), true).await;
    }
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("AMC0458F1C2A9B7E31: VideoMotion")
    );
    let (jpeg, _) = open(&mails[0]);
    assert_eq!(images::decode_dims(&jpeg.expect("a picture")), (640, 480));
    d.wait_for_log("AMC0458F1C2A9B7E31: state Stop is not a rising edge", T)
        .await;

    // The next Start mails again; a repeated Start does not.
    let (_, start) = event("\"Start\"");
    for _ in 0..2 {
        r.broker.publish(topic, start.as_bytes(), true).await;
    }
    r.smtp.wait_for_messages(2, T).await;
    d.wait_for_log("AMC0458F1C2A9B7E31: state Start is not a rising edge", T)
        .await;
    assert_eq!(r.smtp.messages().len(), 2, "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_json_with_a_base64_picture() {
    use base64::Engine;
    let r = rig::start(64, 64).await;
    let sources = r#"  - kind: mqtt
    topic: scripts/alert
    json: {camera: /camera, label: /label, score: /score, image_base64: /image}"#;
    let d = crate::support::daemon::Daemon::start(Some(&with_sources(&r, sources)), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    let jpeg = images::camera_jpeg(640, 360, 80);
    let payload = serde_json::json!({
        "camera": "porch",
        "label": "person",
        "score": 0.91,
        "image": base64::engine::general_purpose::STANDARD.encode(&jpeg),
    });
    r.broker
        .publish("scripts/alert", payload.to_string().as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("porch: person (91%)")
    );
    let (got, _) = open(&mails[0]);
    assert_eq!(images::decode_dims(&got.expect("a picture")), (640, 360));
    assert_eq!(r.frigate.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_url_to_a_host_not_allowed_is_never_fetched() {
    let r = rig::start(64, 64).await;
    let web = http::start({
        let jpeg = images::camera_jpeg(320, 240, 80);
        move |_: &Request| Response::jpeg(jpeg.clone())
    })
    .await;
    // The first source has the default allowed_hosts: the host:port of every URL in the
    // configuration, here only Frigate's (127.0.0.1:<frigate port>). The second lists the
    // web server.
    let sources = format!(
        r#"  - kind: mqtt
    topic: scripts/+/alert
    json: {{image_url: /url}}
  - kind: mqtt
    topic: listed/+/alert
    json: {{image_url: /url}}
    allowed_hosts: ["127.0.0.1:{}"]"#,
        web.port
    );
    let d = crate::support::daemon::Daemon::start(Some(&with_sources(&r, &sources)), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    // `localhost` is named nowhere in the configuration (only 127.0.0.1 is).
    let evil = format!(r#"{{"url": "http://localhost:{}/steal.jpg"}}"#, web.port);
    r.broker
        .publish("scripts/gate/alert", evil.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let (jpeg, text) = open(&mails[0]);
    assert!(jpeg.is_none());
    assert!(text.contains("not in sources[0].allowed_hosts"), "{text}");
    d.wait_for_log("which is not in sources[0].allowed_hosts; not fetched", T)
        .await;

    // Frigate's host, but another port: the default names Frigate's API, not every
    // service on its machine.
    let other_port = format!(r#"{{"url": "http://127.0.0.1:{}/ok.jpg"}}"#, web.port);
    r.broker
        .publish("scripts/porch/alert", other_port.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let (jpeg, text) = open(&mails[1]);
    assert!(jpeg.is_none());
    assert!(
        text.contains(&format!(
            "points at 127.0.0.1:{}, which is not in sources[0].allowed_hosts",
            web.port
        )),
        "{text}"
    );
    assert_eq!(web.request_count(), 0, "no request reached the server");

    // Listed with its port, the same URL is fetched.
    r.broker
        .publish("listed/yard/alert", other_port.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(3, T).await;
    assert!(open(&mails[2]).0.is_some());
    assert_eq!(web.requests().len(), 1);
    assert_eq!(web.requests()[0].path, "/ok.jpg");
}

/// A Frigate that requires a login: tokens are `tok<N>`, only the latest is valid, and
/// `expire` invalidates it the way an expired JWT is refused.
struct AuthFrigate {
    logins: AtomicUsize,
    valid: Mutex<Option<String>>,
}

fn frigate_with_login(
    state: Arc<AuthFrigate>,
    jpeg: Vec<u8>,
    png: Vec<u8>,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |req: &Request| {
        if req.method == "POST" && req.path == "/api/login" {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if body["user"] == "mailer" && body["password"] == "s3cret" {
                let n = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let token = format!("tok{n}");
                *state.valid.lock().unwrap() = Some(token.clone());
                return Response::json(200, "{}").with_header(
                    "Set-Cookie",
                    &format!("frigate_token={token}; Path=/; HttpOnly"),
                );
            }
            return Response::json(401, r#"{"message": "Login failed"}"#);
        }
        let valid = state.valid.lock().unwrap().clone();
        let authorized =
            valid.is_some_and(|t| req.header("authorization") == Some(&format!("Bearer {t}")));
        if !authorized {
            return Response::status(401, "Unauthorized");
        }
        match req.path_only() {
            "/api/version" => Response::new(200, "text/plain", b"0.15.2-2ab4b8c".to_vec()),
            p if p.ends_with("garden2/snapshot.jpg") => {
                Response::new(200, "image/png", png.clone())
            }
            p if p.ends_with("/snapshot.jpg") => Response::jpeg(jpeg.clone()),
            _ => Response::json(404, r#"{"success": false}"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_login_bearer_token_relogin_once_and_version_detection() {
    let r = rig::start(64, 64).await;
    let state = Arc::new(AuthFrigate {
        logins: AtomicUsize::new(0),
        valid: Mutex::new(None),
    });
    let frigate = http::start(frigate_with_login(
        state.clone(),
        images::camera_jpeg(1920, 1080, 85),
        images::png(800, 600),
    ))
    .await;
    let config = r
        .config()
        .replace(&r.frigate.url(), &frigate.url())
        .replace(
            "frigate:\n",
            "snapshot:\n  bbox: true\n  timestamp: false\nfrigate:\n  username: mailer\n  password: s3cret\n",
        );
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;

    r.broker
        .publish("frigate/events", EVENT_NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert!(open(&mails[0]).0.is_some(), "{}", d.logs());
    let reqs = frigate.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/api/login")
    );
    assert_eq!(reqs[1].header("authorization"), Some("Bearer tok1"));
    assert_eq!(reqs[1].query_param("bbox").as_deref(), Some("1"));
    assert_eq!(reqs[1].query_param("timestamp").as_deref(), Some("0"));
    assert_eq!(reqs[1].query_param("height"), None, "version not known yet");
    d.wait_for_log("frigate: version 0.15 detected", T).await;

    // The token expires: one 401, one new login, and the snapshot (a PNG this time) arrives
    // as a JPEG, resized with 0.15's `height`.
    *state.valid.lock().unwrap() = Some("expired".into());
    let garden = EVENT_NEW
        .replace("1731254400.123456-k3v9qz", "1731254500.000000-garden2")
        .replace("\"driveway\"", "\"garden\"");
    r.broker
        .publish("frigate/events", garden.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let (jpeg, _) = open(&mails[1]);
    assert_eq!(
        images::decode_dims(&jpeg.expect("the PNG re-encoded as JPEG")),
        (800, 600)
    );
    assert_eq!(
        state.logins.load(Ordering::SeqCst),
        2,
        "exactly one re-login"
    );
    let last = frigate.requests().pop().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer tok2"));
    assert_eq!(last.query_param("height").as_deref(), Some("1280"));
    assert!(d.logs().contains("logging in again"));
    assert!(!d.logs().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_wrong_password_names_the_keys() {
    let r = rig::start(64, 64).await;
    let state = Arc::new(AuthFrigate {
        logins: AtomicUsize::new(0),
        valid: Mutex::new(None),
    });
    let frigate = http::start(frigate_with_login(
        state,
        images::camera_jpeg(64, 64, 80),
        images::png(8, 8),
    ))
    .await;
    let config = r
        .config()
        .replace(&r.frigate.url(), &frigate.url())
        .replace(
            "frigate:\n",
            "frigate:\n  version: \"0.14\"\n  username: mailer\n  password: not-it\n",
        );
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.broker
        .publish("frigate/events", EVENT_NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let (jpeg, text) = open(&mails[0]);
    assert!(jpeg.is_none());
    assert!(
        text.contains("Frigate refused the login (401 Unauthorized)"),
        "{text}"
    );
    d.wait_for_log("check frigate.username and frigate.password", T)
        .await;
    assert!(!d.logs().contains("not-it"));
    assert!(frigate.requests().iter().all(|r| r.path == "/api/login"));
}

/// Frigate's port 8971 stand-in: HTTPS with a self-signed certificate, serving `jpeg` for
/// every event snapshot. Returns the port and a counter of answered requests.
async fn self_signed_frigate(jpeg: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![key.cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let jpeg = jpeg.clone();
            let count = count.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = Full::new(Bytes::from(jpeg.clone()));
                    async move {
                        hyper::Response::builder()
                            .header("Content-Type", "image/jpeg")
                            .body(body)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_self_signed_certificate_needs_insecure_tls() {
    let r = rig::start(64, 64).await;
    let (port, served) = self_signed_frigate(images::camera_jpeg(640, 360, 80)).await;
    let url = format!("https://127.0.0.1:{port}");
    let config = r.config().replace(&r.frigate.url(), &url);

    // Verified by default: the mail says why there is no picture and names the key.
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.broker
        .publish("frigate/events", EVENT_NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let (jpeg, text) = open(&mails[0]);
    assert!(jpeg.is_none());
    assert!(text.contains("frigate.insecure_tls: true"), "{text}");
    assert_eq!(served.load(Ordering::SeqCst), 0);
    drop(d);

    // With insecure_tls the same server is used.
    let config = config.replace("frigate:\n", "frigate:\n  insecure_tls: true\n");
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    let garden = EVENT_NEW
        .replace("1731254400.123456-k3v9qz", "1731254600.000000-tls001")
        .replace("\"driveway\"", "\"garden\"");
    r.broker
        .publish("frigate/events", garden.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let (jpeg, _) = open(&mails[1]);
    assert_eq!(images::decode_dims(&jpeg.expect("a picture")), (640, 360));
    assert!(served.load(Ordering::SeqCst) >= 1);
}
