//! Hostile and broken input against the real binary: malformed, oversized and mistyped
//! payloads, header-injection attempts, decompression bombs, error pages and slow servers
//! instead of pictures, and a replay storm of retained messages. In every case the daemon
//! stays up, says what happened in one log line, and still mails the next normal event.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::http::{self, Request, Response};
use crate::support::images;
use crate::support::rig::{self, Rig, NEW, T};
use crate::support::smtp::ReceivedMail;

/// Fails the test if the daemon has exited.
fn assert_running(d: &mut Daemon) {
    assert!(
        d.try_exit().is_none(),
        "snapmail exited: {:?}\n--- log ---\n{}",
        d.try_exit(),
        d.logs()
    );
}

/// Publishes a normal event on camera `healthy` and waits for mail number `n` (1-based): the
/// daemon is not only alive but still working.
async fn still_mails(r: &Rig, d: &mut Daemon, n: usize) -> ReceivedMail {
    assert_running(d);
    r.frigate_event("healthy", 900_000 + n).await;
    let mails = r.smtp.wait_for_messages(n, T).await;
    let last = mails[n - 1].clone();
    assert_eq!(
        last.header("Subject").as_deref(),
        Some("healthy: person (73%)"),
        "log:\n{}",
        d.logs()
    );
    assert_running(d);
    last
}

/// Publishes `payload` on `frigate/events`, then checks that exactly one log line explains
/// why it was not an event and that the daemon still mails.
async fn rejected_in_one_line(payload: &[u8], why: &str) -> Daemon {
    let r = rig::start(640, 360).await;
    let mut d = r.daemon(&[]).await;
    r.broker.publish("frigate/events", payload, false).await;
    d.wait_for_log(why, T).await;
    still_mails(&r, &mut d, 1).await;
    assert_eq!(
        d.count_log(why),
        1,
        "one line per bad message:\n{}",
        d.logs()
    );
    assert_eq!(r.smtp.messages().len(), 1, "the bad message mailed nothing");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_ignored_with_one_line() {
    rejected_in_one_line(
        br#"{"type": "new", "after": {"id": "x", "camera": "#,
        "not a Frigate event message: EOF while parsing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_wrong_types_is_ignored_with_one_line() {
    let wrong = NEW
        .replace("\"camera\": \"driveway\"", "\"camera\": 42")
        .replace("1731254400.123456-k3v9qz", "wrong-types");
    assert_ne!(wrong, NEW, "the fixture has a camera field to break");
    rejected_in_one_line(
        wrong.as_bytes(),
        "not a Frigate event message: invalid type: integer `42`, expected a string",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_ignored_with_one_line() {
    let mut bytes = NEW.as_bytes().to_vec();
    // Overlong encodings and a lone continuation byte inside the (used) camera name of `after`.
    let at = NEW.rfind("driveway").expect("fixture names driveway");
    bytes.splice(at..at + 3, [0xC0, 0xAF, 0x80]);
    assert!(std::str::from_utf8(&bytes).is_err());
    rejected_in_one_line(&bytes, "not a Frigate event message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_payload_drops_the_connection_which_recovers() {
    let r = rig::start(640, 360).await;
    let mut d = r.daemon(&[]).await;
    // Over the 16 MiB default of mqtt.max_packet_bytes. rumqttc cannot skip a packet it
    // refuses, so the connection is reset; the daemon must connect and subscribe again.
    let huge = vec![b'x'; 50 * 1024 * 1024];
    r.broker.publish("frigate/events", &huge, false).await;
    d.wait_for_log("larger than mqtt.max_packet_bytes", T).await;
    assert_eq!(
        d.count_log("larger than mqtt.max_packet_bytes"),
        1,
        "{}",
        d.logs()
    );
    // With the default clean session, what is published before the new subscription is
    // not kept for snapmail: wait for the new subscription (frigate/events is the first).
    crate::support::wait::wait_until("connected and subscribed again", T, || {
        let logs = d.logs();
        d.count_log("mqtt: connected") == 2
            && logs
                .rsplit("mqtt: connected")
                .next()
                .is_some_and(|after| after.contains("mqtt: subscribed"))
    })
    .await;
    still_mails(&r, &mut d, 1).await;
    assert_eq!(r.smtp.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_camera_is_filtered_with_one_line() {
    let r = rig::start(640, 360).await;
    let mut d = r
        .daemon(&[
            ("SNAPMAIL__CAMERAS_ONLY", "true"),
            ("SNAPMAIL__CAMERAS__HEALTHY__COOLDOWN", "1m"),
        ])
        .await;
    r.frigate_event("stranger", 1).await;
    let why = "camera not listed under cameras and cameras_only is set";
    d.wait_for_log(why, T).await;
    still_mails(&r, &mut d, 1).await;
    assert_eq!(d.count_log(why), 1, "{}", d.logs());
    assert_eq!(r.smtp.messages().len(), 1);
}

/// Header names of a mail, in order, lower-cased.
fn header_names(mail: &ReceivedMail) -> Vec<String> {
    mail.headers()
        .into_iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_and_non_ascii_cannot_inject_headers() {
    let r = rig::start(640, 360).await;
    let mut d = r.daemon(&[]).await;
    let normal = still_mails(&r, &mut d, 1).await;

    let hostile = NEW
        .replace("1731254400.123456-k3v9qz", "1731254400.999999-inject")
        .replace(
            "\"camera\": \"driveway\"",
            r#""camera": "Einfahrt Süd\r\nBcc: victim@example.com""#,
        )
        .replace(
            "\"label\": \"person\"",
            r#""label": "person\nX-Injected: yes\r\n\r\n<html>""#,
        )
        .replace(
            "\"sub_label\": null",
            r#""sub_label": ["Jürgen\r\nReply-To: evil@example.com", 0.9]"#,
        );
    assert!(
        hostile.contains("Bcc") && hostile.contains("X-Injected") && hostile.contains("Reply-To")
    );
    r.broker
        .publish("frigate/events", hostile.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    let mail = &mails[1];
    let raw = String::from_utf8_lossy(&mail.data);

    // Exactly the headers a normal mail has, in the same order.
    assert_eq!(header_names(mail), header_names(&normal), "{raw}");
    for injected in ["bcc", "x-injected", "reply-to"] {
        assert!(
            !header_names(mail).iter().any(|h| h == injected),
            "{injected} header injected:\n{raw}"
        );
    }
    assert_eq!(mail.rcpt_to, vec!["me@example.com".to_string()]);

    // The subject is RFC 2047-encoded on the wire, and decodes to one line.
    let subject_line = raw
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
        .expect("a Subject header");
    assert!(subject_line.contains("=?utf-8?"), "{subject_line}");
    let parsed = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses");
    let subject = parsed.subject().expect("a subject");
    assert!(subject.contains("Einfahrt Süd"), "{subject:?}");
    assert!(!subject.contains(['\r', '\n']), "{subject:?}");
    assert_running(&mut d);
}

/// A PNG whose header claims `width`×`height` pixels, followed by a few bytes of image data:
/// a decoder that trusted the header would allocate width×height×3 bytes.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of zeros: tiny here, 4.8 GB once inflated.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn the_png_bomb_is_well_formed() {
    let bomb = png_bomb(40_000, 40_000);
    let reader = image::ImageReader::new(std::io::Cursor::new(&bomb))
        .with_guessed_format()
        .expect("read");
    assert_eq!(
        reader.into_dimensions().expect("a PNG header"),
        (40_000, 40_000)
    );
}

/// Starts the rig with `snapshot` answering every Frigate snapshot request, publishes one
/// event, and returns the daemon once its mail has arrived.
async fn mail_with_snapshot_server<F>(
    snapshot: F,
    envs: &[(&str, &str)],
) -> (Rig, Daemon, ReceivedMail)
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let r = Rig {
        broker: crate::support::mosquitto::start(),
        smtp: crate::support::smtp::start().await,
        frigate: http::start(snapshot).await,
    };
    let mut envs = envs.to_vec();
    envs.push(("SNAPMAIL__FRIGATE__SNAPSHOT_RETRY_DELAY", "100ms"));
    let mut d = r.daemon(&envs).await;
    r.frigate_event("driveway", 1).await;
    let mail = r.smtp.wait_for_messages(1, T).await.remove(0);
    assert_running(&mut d);
    (r, d, mail)
}

/// The plain-text body and whether the mail carries a JPEG.
fn text_and_picture(mail: &ReceivedMail) -> (String, bool) {
    use mail_parser::MimeHeaders;
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses");
    let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let jpeg = msg.parts.iter().any(|p| {
        p.content_type()
            .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("jpeg"))
    });
    (text, jpeg)
}

/// The snapshot server misbehaves: the mail still goes, without a picture, saying why in
/// one log line that contains `why`; then a normal event mails with its picture.
async fn mails_without_picture<F>(snapshot: F, envs: &[(&str, &str)], why: &str)
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    // The first request misbehaves; later ones get a proper picture.
    let good = images::camera_jpeg(640, 360, 85);
    let first = std::sync::atomic::AtomicBool::new(true);
    let handler = move |req: &Request| {
        if req.path_only().contains("healthy") {
            Response::jpeg(good.clone())
        } else if first.load(std::sync::atomic::Ordering::SeqCst) {
            snapshot(req)
        } else {
            Response::jpeg(good.clone())
        }
    };
    let (r, mut d, mail) = mail_with_snapshot_server(handler, envs).await;
    let (text, jpeg) = text_and_picture(&mail);
    assert!(!jpeg, "no picture expected:\n{text}");
    assert_eq!(
        d.count_log("no picture for this mail"),
        1,
        "one line:\n{}",
        d.logs()
    );
    assert!(
        d.logs()
            .lines()
            .any(|l| l.contains("no picture for this mail") && l.contains(why)),
        "expected {why:?} in the log:\n{}",
        d.logs()
    );
    let next = still_mails(&r, &mut d, 2).await;
    assert!(text_and_picture(&next).1, "the next mail has its picture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_before_decoding() {
    let bomb = png_bomb(40_000, 40_000);
    mails_without_picture(
        move |_| Response::new(200, "image/jpeg", bomb.clone()),
        &[],
        "over snapshot.max_pixels",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_instead_of_a_jpeg_is_reported() {
    mails_without_picture(
        |_| {
            Response::new(
                200,
                "text/html",
                b"<!doctype html><html><body>Login required</body></html>".to_vec(),
            )
        },
        &[],
        "not a JPEG, PNG or WebP image",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_snapshot_server_is_reported() {
    mails_without_picture(
        |_| Response::json(404, r#"{"success": false, "message": "Event not found"}"#),
        &[("SNAPMAIL__FRIGATE__SNAPSHOT_RETRIES", "2")],
        "404",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_snapshot_server_is_reported() {
    mails_without_picture(
        |_| Response::status(500, "Internal Server Error"),
        &[("SNAPMAIL__FRIGATE__SNAPSHOT_RETRIES", "2")],
        "500",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_snapshot_server_times_out() {
    let good = images::camera_jpeg(640, 360, 85);
    mails_without_picture(
        move |_| Response::jpeg(good.clone()).with_delay(Duration::from_secs(20)),
        &[
            ("SNAPMAIL__SNAPSHOT__TIMEOUT", "1s"),
            ("SNAPMAIL__FRIGATE__SNAPSHOT_RETRIES", "1"),
        ],
        "snapshot.timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_replay_storm_on_reconnect_mails_nothing() {
    let mut r = rig::start(640, 360).await;
    // 200 cameras left a retained "ON" and a retained script event behind.
    const CAMERAS: usize = 200;
    for i in 0..CAMERAS {
        r.broker
            .publish(&format!("cameras/cam{i}/motion"), b"ON", true)
            .await;
        r.broker
            .publish(
                &format!("scripts/cam{i}/alert"),
                format!(r#"{{"camera": "cam{i}", "label": "person"}}"#).as_bytes(),
                true,
            )
            .await;
    }
    // A retained Frigate event too: Frigate itself does not retain, but a bridge might.
    r.broker
        .publish("frigate/events", NEW.as_bytes(), true)
        .await;
    let config = format!(
        "{}sources:\n  - kind: frigate_events\n  - kind: mqtt\n    topic: cameras/+/motion\n  \
         - kind: mqtt\n    topic: scripts/+/alert\n    json:\n      camera: /camera\n      label: /label\n",
        r.config()
    );
    let mut d = Daemon::start(Some(&config), &[("SNAPMAIL__CONTROL__ENABLED", "false")]);
    d.wait_for_log("mqtt: subscribed", T).await;
    // The broker goes away and comes back: everything is replayed a second time.
    crate::support::wait::wait_until("the first replay", T, || {
        d.count_log("retained message: a replay") >= 2 * CAMERAS
    })
    .await;
    r.broker.stop_graceful();
    r.broker.restart();
    crate::support::wait::wait_until("the second replay", T, || {
        d.count_log("retained message: a replay") >= 4 * CAMERAS
    })
    .await;
    // The retained Frigate event mails once (it is new to snapmail), its replay does not.
    still_mails(&r, &mut d, 2).await;
    let mails = r.smtp.messages();
    assert_eq!(
        mails.len(),
        2,
        "{:?}",
        mails
            .iter()
            .map(|m| m.header("Subject"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("driveway: person (73%)")
    );
    assert_eq!(
        d.count_log("retained message: a replay"),
        4 * CAMERAS,
        "one line per replayed message"
    );
    assert_running(&mut d);
}
