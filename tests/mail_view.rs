//! What a mail shows its reader, end to end through the real binary, Mosquitto and the
//! Gmail-like SMTP server: headers that stay within RFC 5322's line limit whatever a payload
//! names, no hidden bidi or zero-width characters in the subject or the log, times in the
//! configured `timezone`, links to `frigate.public_url`, and a layout that fits a phone.
//!
//! The layout test renders the received mail in headless Chromium (Debian `chromium`) at
//! 412 and 1000 CSS pixels wide and measures the picture and the page. Headless Chromium's
//! window is at least 500 pixels wide, so the mail is shown in an iframe of the screen's
//! width, which is its viewport (what `width=device-width` and `100%` resolve against).
//! Without Chromium it
//! prints `skipped` and passes, unless `SNAPMAIL_REQUIRE_CHROMIUM=1` says it must run (then
//! it fails, naming the package). With `SNAPMAIL_RENDER_DIR=<dir>` it also saves the pages
//! and PNG screenshots there, to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail_parser::MimeHeaders;

use crate::support::daemon::Daemon;
use crate::support::rig::{self, Rig, NEW, T};
use crate::support::smtp::{self, ReceivedMail, SmtpServer, MAX_LINE_OCTETS};

/// The text/plain part, the text/html part and the inline JPEG of a received mail.
struct Parts {
    subject: String,
    text: String,
    html: String,
    jpeg: Option<Vec<u8>>,
}

fn parts(mail: &ReceivedMail) -> Parts {
    let msg = mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses as MIME");
    let jpeg = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("jpeg"))
        })
        .map(|p| p.contents().to_vec());
    Parts {
        subject: msg.subject().unwrap_or_default().to_owned(),
        text: msg.body_text(0).expect("a text part").into_owned(),
        html: msg.body_html(0).expect("an HTML part").into_owned(),
        jpeg,
    }
}

/// Every line of the message as sent, without its CRLF.
fn wire_lines(mail: &ReceivedMail) -> Vec<String> {
    String::from_utf8_lossy(&mail.data)
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

/// Bidi controls and zero-width characters a payload may try to smuggle in.
const HIDDEN: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{FEFF}', '\u{061C}',
];

fn tls_params(server: &SmtpServer) -> TlsParameters {
    TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(server.ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

/// A raw message whose Subject line is `subject_len` octets of `x` after `Subject: `.
fn raw_message(line_len: usize) -> Vec<u8> {
    let subject = "x".repeat(line_len - "Subject: ".len());
    format!(
        "From: cam@example.com\r\nTo: me@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{line_len}.raw@example.com>\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_smtp_test_server_refuses_a_line_over_998_octets_like_gmail() {
    let server = smtp::start().await;
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.starttls_port)
        .tls(Tls::Required(tls_params(&server)))
        .credentials(Credentials::new(
            "cam@example.com".into(),
            "abcdefghijklmnop".into(),
        ))
        .timeout(Some(T))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some("cam@example.com".parse().unwrap()),
        vec!["me@example.com".parse().unwrap()],
    )
    .unwrap();
    t.send_raw(&envelope, &raw_message(MAX_LINE_OCTETS))
        .await
        .expect("a 998-octet line is allowed");
    let e = t
        .send_raw(&envelope, &raw_message(MAX_LINE_OCTETS + 1))
        .await
        .expect_err("a 999-octet line is refused")
        .to_string();
    assert!(e.contains("Line too long"), "{e}");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_character_camera_name_mails_with_a_bounded_subject() {
    let r = rig::start(1280, 720).await;
    let d = r.daemon(&[]).await;
    let camera = format!("Camera-{}", "x".repeat(10_000));
    let zone = "z".repeat(5_000);
    let payload = NEW
        .replace("\"driveway\"", &format!("{camera:?}"))
        .replace("\"driveway_entrance\"", &format!("{zone:?}"));
    r.broker
        .publish("frigate/events", payload.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let mail = &mails[0];
    for line in wire_lines(mail) {
        assert!(
            line.len() <= MAX_LINE_OCTETS,
            "a {}-octet line: {}…",
            line.len(),
            &line[..60]
        );
    }
    let p = parts(mail);
    assert!(p.subject.chars().count() <= 200, "{}", p.subject);
    assert!(p.subject.starts_with("Camera-xxx"), "{}", p.subject);
    assert!(p.subject.ends_with("…: person (73%)"), "{}", p.subject);
    assert!(p.jpeg.is_some(), "the picture came along");
    assert!(p.text.contains(&camera[..250]), "the body names the camera");
    d.wait_for_log("mail queued", T).await;
    assert!(
        !d.dir().join("spool/dead").exists()
            || std::fs::read_dir(d.dir().join("spool/dead"))
                .unwrap()
                .next()
                .is_none(),
        "nothing went to dead/:\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_and_zero_width_characters_stay_out_of_subject_and_logs() {
    let r = rig::start(640, 360).await;
    let d = r.daemon(&[]).await;
    // JSON escapes, as a payload carries them.
    let payload = NEW
        .replace("\"driveway\"", r#""drive\u202Eyaw\u200B""#)
        .replace(
            "\"label\": \"person\"",
            r#""label": "per\u2066son\u2069\ufeff""#,
        )
        .replace(
            "\"sub_label\": null",
            r#""sub_label": ["Al\u200Fice\u061C", 0.9]"#,
        )
        .replace("\"driveway_entrance\"", r#""por\u202Ach\u202C""#);
    assert_ne!(payload, NEW);
    // Messages that are not events are logged with their reason, which quotes the payload.
    let false_positive = r#"{"type":"new","after":{"id":"1.0-a\u202Eb","camera":"c","label":"person","false_positive":true,"has_snapshot":true}}"#;
    let mistyped =
        r#"{"type":"new","after":{"id":"1.0-b","camera":"c","has_snapshot":"yes\u202E\u200B"}}"#;
    for m in [false_positive, mistyped] {
        r.broker
            .publish("frigate/events", m.as_bytes(), false)
            .await;
    }
    r.broker
        .publish("frigate/events", payload.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let p = parts(&mails[0]);
    assert_eq!(p.subject, "driveyaw: person Alice (73%)");
    for (what, body) in [("text", &p.text), ("html", &p.html)] {
        assert!(!body.contains(HIDDEN), "{what}: {body:?}");
        assert!(body.contains("porch"), "{what}: {body}");
    }
    d.wait_for_log("mail queued", T).await;
    let logs = d.logs();
    assert!(logs.contains("event person Alice (73%): mailing"), "{logs}");
    assert!(
        logs.contains("event 1.0-ab is still a false positive"),
        "{logs}"
    );
    assert!(logs.contains("unreadable message ignored"), "{logs}");
    for line in logs.lines() {
        assert!(!line.contains(HIDDEN), "a hidden character in: {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timezone_in_the_config_sets_the_time_mails_show() {
    let r = rig::start(640, 360).await;
    // The process zone says Berlin; the configuration says Tokyo, and wins.
    let config = format!("{}timezone: Asia/Tokyo\n", r.config());
    let d = Daemon::start(Some(&config), &[("TZ", "Europe/Berlin")]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.broker
        .publish("frigate/events", NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let p = parts(&mails[0]);
    // The fixture's start_time 1731254400 is 2024-11-10 16:00 UTC.
    assert!(
        p.text.contains("Time: 2024-11-11 01:00:00 JST"),
        "{}",
        p.text
    );
    assert!(p.html.contains("2024-11-11 01:00:00 JST"), "{}", p.html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_in_frigate_points_at_frigate_public_url() {
    let r = rig::start(640, 360).await;
    let d = r
        .daemon(&[(
            "SNAPMAIL__FRIGATE__PUBLIC_URL",
            "https://cams.example.com/frigate/",
        )])
        .await;
    r.broker
        .publish("frigate/events", NEW.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let p = parts(&mails[0]);
    let link = "https://cams.example.com/frigate/explore?event_id=1731254400.123456-k3v9qz";
    assert!(
        p.text.contains(&format!("Open in Frigate: {link}")),
        "{}",
        p.text
    );
    assert!(
        p.html.contains(&format!("<a href=\"{link}\">")),
        "{}",
        p.html
    );
    assert!(!p.text.contains(&r.frigate.url()), "{}", p.text);
    // The picture still comes from frigate.url, the API snapmail itself reaches.
    assert_eq!(
        r.frigate.requests()[0].path_only(),
        "/api/events/1731254400.123456-k3v9qz/snapshot.jpg"
    );
    assert!(p.jpeg.is_some());
    drop(d);
}

// ---------------------------------------------------------------------------------------
// Layout in a real browser

/// The Chromium binary on `PATH`, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Sizes measured in the page after load, in CSS pixels.
#[derive(Debug)]
struct Measured {
    viewport: f64,
    page: f64,
    picture: f64,
}

/// A page that shows `html` in a `width`-pixel iframe and, once everything is loaded,
/// writes what it measured inside the iframe into its own DOM for `--dump-dom`.
fn screen(html: &str, width: u32) -> String {
    let srcdoc = html.replace('&', "&amp;").replace('"', "&quot;");
    format!(
        r#"<!doctype html><html><body style="margin:0;background:#888">
<iframe id="mail" style="display:block;width:{width}px;height:1400px;border:0;background:#fff" srcdoc="{srcdoc}"></iframe>
<script>
window.addEventListener('load', () => {{
  const w = document.getElementById('mail').contentWindow;
  const img = w.document.images[0];
  document.body.setAttribute('data-measured', [
    w.innerWidth,
    w.document.documentElement.scrollWidth,
    img ? img.getBoundingClientRect().width : -1,
  ].join(' '));
}});
</script></body></html>"#
    )
}

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// Runs Chromium on `page` in a window `width` CSS pixels wide (at least its minimum, 500)
/// with `extra` arguments; its stdout.
fn run_chromium(bin: &Path, dir: &Path, page: &Path, width: u32, extra: &[&str]) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    // `timeout` bounds a browser that hangs instead of hanging the suite.
    let out = Command::new("timeout")
        .arg("60")
        .arg(bin)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={},1400", width.max(500)))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn measure(bin: &Path, dir: &Path, page: &Path, width: u32) -> Measured {
    let dom = run_chromium(
        bin,
        dir,
        page,
        width,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let values: Vec<f64> = dom
        .split("data-measured=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no measurements in the page:\n{dom}"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    Measured {
        viewport: values[0],
        page: values[1],
        picture: values[2],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_fits_412_and_1000_pixel_screens_in_chromium() {
    let Some(bin) = chromium() else {
        let required = std::env::var("SNAPMAIL_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "SNAPMAIL_REQUIRE_CHROMIUM=1 but no chromium on PATH; install it (apt-get install chromium)"
        );
        println!(
            "skipped: the_mail_fits_412_and_1000_pixel_screens_in_chromium needs chromium \
             (apt-get install chromium); set SNAPMAIL_REQUIRE_CHROMIUM=1 to make its absence a failure"
        );
        return;
    };
    let r: Rig = rig::start(1920, 1080).await;
    let _d = r.daemon(&[]).await;
    // A long unbroken name must wrap rather than widen the page.
    let camera = format!("Carport_{}", "x".repeat(150));
    let payload = NEW.replace("\"driveway\"", &format!("{camera:?}"));
    r.broker
        .publish("frigate/events", payload.as_bytes(), false)
        .await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    let p = parts(&mails[0]);
    let jpeg = p.jpeg.expect("an inline picture");
    assert!(p.html.contains("cid:snapshot"), "{}", p.html);

    let keep = std::env::var_os("SNAPMAIL_RENDER_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("snapshot.jpg"), &jpeg).unwrap();
    let html = p.html.replace("cid:snapshot", "snapshot.jpg");
    std::fs::write(dir.join("mail.html"), &html).unwrap();
    let pages = [412, 1000].map(|w| {
        let page = dir.join(format!("screen-{w}.html"));
        std::fs::write(&page, screen(&html, w)).unwrap();
        (w, page)
    });

    let (bin2, dir2, pages2) = (bin.clone(), dir.clone(), pages.clone());
    let measured = tokio::task::spawn_blocking(move || {
        pages2.map(|(w, page)| (w, measure(&bin2, &dir2, &page, w)))
    })
    .await
    .unwrap();
    for (width, m) in &measured {
        println!("{width} px window: {m:?}");
        assert_eq!(m.viewport, f64::from(*width), "{m:?}");
        assert!(
            m.page <= m.viewport,
            "{width} px: the page is wider than the screen: {m:?}"
        );
        assert!(
            m.picture <= m.viewport && m.picture >= m.viewport - 40.0,
            "{width} px: the picture should fill the width without overflowing: {m:?}"
        );
    }
    if let Some(dir) = keep {
        let shots = tokio::task::spawn_blocking(move || {
            pages.map(|(w, page)| {
                let png = dir.join(format!("mail-{w}.png"));
                run_chromium(
                    &bin,
                    &dir,
                    &page,
                    w,
                    &[&format!("--screenshot={}", png.display())],
                );
                png
            })
        })
        .await
        .unwrap();
        println!("screenshots: {shots:?}");
    }
}
