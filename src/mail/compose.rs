//! Composing the mail for a [`Notification`]: subject, HTML with the picture inline
//! (`cid:`), a plain-text alternative, and a stable `Message-ID`.
//!
//! Every value that came from a camera or a payload is untrusted: it loses control and
//! invisible characters ([`crate::text`]) before it reaches a header (no header injection,
//! no bidi tricks) and is HTML-escaped before it reaches the HTML part.
//!
//! Headers stay short whatever the payload says: the subject is cut to [`SUBJECT_MAX`]
//! characters (the camera name to [`SUBJECT_CAMERA`] of them). lettre folds a header only
//! at spaces and encodes non-ASCII (RFC 2047) in short encoded words, so an unbroken ASCII
//! run is the one thing that could make a header line longer than the 998 octets RFC 5322
//! allows (Gmail answers `500 5.5.2 Line too long`); bounding the subject bounds it.
//!
//! The HTML fits any screen: the picture keeps its pixel size as an upper bound but shrinks
//! with the window (`max-width:100%; height:auto`), and long names wrap instead of widening
//! the page.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::snapshot::Notification;
use crate::text;

/// Longest subject, in characters.
pub(crate) const SUBJECT_MAX: usize = 200;
/// Longest camera name in a subject, in characters, so the label still shows.
pub(crate) const SUBJECT_CAMERA: usize = 64;
/// Longest value in the mail's table of facts, in characters.
const FACT_MAX: usize = 300;

/// A mailbox that does not parse, with what was expected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not an email address (expected you@gmail.com or \"Cameras <you@gmail.com>\")")]
pub struct BadMailbox(pub String);

/// Parse `Name <addr>` or `addr`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, BadMailbox> {
    s.trim()
        .parse::<Mailbox>()
        .map_err(|_| BadMailbox(s.trim().to_owned()))
}

/// A finished mail, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `<…@snapmail>`, also the outbox key.
    pub message_id: String,
    pub message: Message,
}

impl Mail {
    /// The envelope recipients (taken from the To header), as addresses.
    pub fn recipients(&self) -> Vec<String> {
        self.message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// Builds mails with fixed sender and recipients, showing times in one zone.
#[derive(Debug, Clone)]
pub struct Composer {
    from: Mailbox,
    to: Vec<Mailbox>,
    tz: TimeZone,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the mail: {0}")]
pub struct ComposeError(pub(crate) String);

impl Composer {
    /// A composer showing times in the system's zone (`TZ`); see [`Composer::with_time_zone`].
    pub fn new(from: &str, to: &[String]) -> Result<Composer, BadMailbox> {
        Ok(Composer {
            from: parse_mailbox(from)?,
            to: to
                .iter()
                .map(|t| parse_mailbox(t))
                .collect::<Result<_, _>>()?,
            tz: TimeZone::system(),
        })
    }

    /// Show times in `tz` (the configuration's `timezone`).
    pub fn with_time_zone(mut self, tz: TimeZone) -> Composer {
        self.tz = tz;
        self
    }

    /// `2024-11-10 17:20:00 CET`: `t` in this composer's zone.
    pub(crate) fn local_time(&self, t: SystemTime) -> String {
        local_time(t, &self.tz)
    }

    /// The `From:` mailbox.
    pub fn from_mailbox(&self) -> &Mailbox {
        &self.from
    }

    /// The `To:` mailboxes.
    pub fn to_mailboxes(&self) -> &[Mailbox] {
        &self.to
    }

    pub fn compose(&self, n: &Notification) -> Result<Mail, ComposeError> {
        let ev = &n.event;
        let subject = subject(&ev.camera, &ev.summary());
        let when = self.local_time(ev.time);
        let message_id = new_message_id(ev.time);

        let mut facts: Vec<(&str, String)> = vec![("Camera", ev.camera.clone())];
        if let Some(label) = &ev.label {
            facts.push(("Object", label.clone()));
        }
        if let Some(sub) = &ev.sub_label {
            facts.push(("Recognised", sub.clone()));
        }
        if let Some(plate) = &ev.plate {
            facts.push(("Plate", plate.clone()));
        }
        if let Some(score) = ev.score {
            facts.push(("Score", format!("{:.0}%", score * 100.0)));
        }
        if !ev.zones.is_empty() {
            facts.push(("Zones", ev.zones.join(", ")));
        }
        facts.push(("Time", when));
        let facts: Vec<(&str, String)> = facts
            .into_iter()
            .map(|(k, v)| (k, text::one_line(&v, FACT_MAX)))
            .collect();

        let mut plain = String::new();
        for (k, v) in &facts {
            plain.push_str(&format!("{k}: {v}\n"));
        }
        let mut html = html_start();
        html.push_str(
            "<table cellpadding=\"2\" style=\"border-collapse:collapse;max-width:100%\">\n",
        );
        for (k, v) in &facts {
            html.push_str(&format!(
                "<tr><th align=\"left\" valign=\"top\" style=\"padding-right:8px\">{k}</th><td style=\"{WRAP}\">{}</td></tr>\n",
                escape(v)
            ));
        }
        html.push_str("</table>\n");
        if let Some(link) = &ev.link {
            plain.push_str(&format!("\nOpen in Frigate: {}\n", text::clean(link)));
            html.push_str(&format!(
                "<p style=\"{WRAP}\"><a href=\"{}\">Open in Frigate</a></p>\n",
                escape(link)
            ));
        }
        let image = match &n.picture {
            Ok(t) => {
                html.push_str(&format!(
                    "<p>{}</p>\n",
                    img("snapshot", t, &format!("snapshot from {}", facts[0].1))
                ));
                Some(t.jpeg.clone())
            }
            Err(why) => {
                let why = why.to_string();
                plain.push_str(&format!("\nNo picture: {}\n", text::clean(&why)));
                html.push_str(&format!(
                    "<p style=\"{WRAP}\"><em>No picture: {}</em></p>\n",
                    escape(&why)
                ));
                None
            }
        };
        html.push_str("</body></html>\n");

        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::plain(plain))
            .multipart(match image {
                Some(jpeg) => MultiPart::related()
                    .singlepart(SinglePart::html(html))
                    .singlepart(
                        Attachment::new_inline("snapshot".into())
                            .body(jpeg, ContentType::parse("image/jpeg").expect("valid")),
                    ),
                None => MultiPart::related().singlepart(SinglePart::html(html)),
            });

        let date = ev.time.max(UNIX_EPOCH + std::time::Duration::from_secs(1));
        finish(&self.from, &self.to, subject, message_id, date, alternative)
    }
}

/// The headers every snapmail mail carries, around `body`.
pub(crate) fn finish(
    from: &Mailbox,
    to: &[Mailbox],
    subject: String,
    message_id: String,
    date: SystemTime,
    body: MultiPart,
) -> Result<Mail, ComposeError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .date(date);
    for to in to {
        builder = builder.to(to.clone());
    }
    let message = builder
        .multipart(body)
        .map_err(|e| ComposeError(e.to_string()))?;
    Ok(Mail {
        message_id,
        message,
    })
}

/// `<time.random@snapmail>`: unique, stable once written, and sortable by creation.
pub fn new_message_id(time: SystemTime) -> String {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("<{ms}.{:016x}@snapmail>", fastrand::u64(..))
}

/// `camera: summary`, one line of at most [`SUBJECT_MAX`] characters.
fn subject(camera: &str, summary: &str) -> String {
    let camera = text::one_line(camera, SUBJECT_CAMERA);
    header_text(&format!("{camera}: {summary}"))
}

/// Payload text made fit for a header: one line, no control or invisible characters, at
/// most [`SUBJECT_MAX`] characters.
pub(crate) fn header_text(s: &str) -> String {
    text::one_line(s, SUBJECT_MAX)
}

/// CSS that lets long names and links wrap inside a narrow screen.
pub(crate) const WRAP: &str = "overflow-wrap:anywhere;word-break:break-word";

/// The start of every HTML part: a viewport as wide as the device, so phones do not zoom
/// out to a desktop width.
pub(crate) fn html_start() -> String {
    "<!doctype html><html><head><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\n\
     <body style=\"margin:0;padding:8px;font-family:sans-serif\">\n"
        .to_owned()
}

/// An inline picture that is never wider than the screen: `width`/`height` give its size
/// (and aspect ratio) where CSS is ignored, the style shrinks it with the window.
pub(crate) fn img(cid: &str, t: &crate::snapshot::image::Thumbnail, alt: &str) -> String {
    format!(
        "<img src=\"cid:{cid}\" width=\"{}\" height=\"{}\" alt=\"{}\" \
         style=\"display:block;max-width:100%;height:auto;border:0\">",
        t.width,
        t.height,
        escape(alt)
    )
}

/// Minimal HTML escaping for text and attribute values; control and invisible characters
/// go as in [`text::clean`].
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in text::clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2024-11-10 17:20:00 CET`: `t` in `tz`.
pub(crate) fn local_time(t: SystemTime, tz: &TimeZone) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::snapshot::http::FetchError;
    use crate::snapshot::image::Thumbnail;
    use crate::snapshot::PictureError;

    fn notification(camera: &str, picture: Result<Thumbnail, PictureError>) -> Notification {
        Notification {
            event: {
                let mut e = Event::new("test", "1", camera);
                e.label = Some("person".into());
                e.score = Some(0.78);
                e.zones = vec!["porch".into()];
                e.time = UNIX_EPOCH + std::time::Duration::from_secs(1_731_254_400);
                e.link = Some("http://frigate:5000/explore?event_id=1".into());
                e
            },
            picture,
        }
    }

    #[test]
    fn subject_and_parts() {
        let c = Composer::new("Cameras <cam@example.com>", &["me@example.com".into()]).unwrap();
        let thumb = Thumbnail {
            jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            width: 2,
            height: 1,
            source_width: 2,
            source_height: 1,
            source_format: "jpeg",
        };
        let mail = c.compose(&notification("driveway", Ok(thumb))).unwrap();
        let raw = String::from_utf8(mail.message.formatted()).unwrap();
        assert!(raw.contains("Subject: driveway: person (78%)"), "{raw}");
        assert!(raw.contains("Content-ID: <snapshot>"), "{raw}");
        assert!(raw.contains("cid:snapshot"));
        assert!(raw.contains("Content-Type: image/jpeg"));
        assert!(raw.contains(&format!("Message-ID: {}", mail.message_id)));
    }

    #[test]
    fn hostile_camera_names_cannot_inject_headers() {
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let mail = c
            .compose(&notification(
                "x\r\nBcc: evil@example.com",
                Err(FetchError::NoSource("none".into()).into()),
            ))
            .unwrap();
        let raw = String::from_utf8(mail.message.formatted()).unwrap();
        assert!(!raw.lines().any(|l| l.starts_with("Bcc:")), "{raw}");
        assert!(raw.contains("No picture: none"));
    }

    fn thumb(width: u32, height: u32) -> Thumbnail {
        Thumbnail {
            jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            width,
            height,
            source_width: width,
            source_height: height,
            source_format: "jpeg",
        }
    }

    /// Every line of the header section, as sent.
    fn header_lines(raw: &[u8]) -> Vec<String> {
        let raw = String::from_utf8_lossy(raw);
        let head = raw.split("\r\n\r\n").next().unwrap_or_default().to_owned();
        head.split("\r\n").map(str::to_owned).collect()
    }

    #[test]
    fn no_header_line_is_over_998_octets_whatever_the_payload() {
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let long_ascii = "x".repeat(10_000);
        let long_words = "word ".repeat(3_000);
        let long_umlauts = "ü".repeat(5_000);
        let long_cjk = "東".repeat(5_000);
        let mixed = format!("{}ü{}", "a".repeat(3_000), "b".repeat(3_000));
        for name in [&long_ascii, &long_words, &long_umlauts, &long_cjk, &mixed] {
            let mut n = notification(name, Ok(thumb(1280, 720)));
            n.event.label = Some(name.clone());
            n.event.sub_label = Some(name.clone());
            n.event.plate = Some(name.clone());
            n.event.zones = vec![name.clone(); 3];
            let mail = c.compose(&n).unwrap();
            let raw = mail.message.formatted();
            for line in header_lines(&raw) {
                assert!(line.len() <= 998, "{} octets: {}", line.len(), &line[..80]);
            }
            let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let subject = parsed.subject().unwrap();
            assert!(
                subject.chars().count() <= SUBJECT_MAX,
                "{}",
                subject.chars().count()
            );
            assert!(subject.contains('…'), "{subject}");
            // Every body line is within the limit too (lettre picks the transfer encoding).
            for line in String::from_utf8_lossy(&raw).split("\r\n") {
                assert!(line.len() <= 998, "{} octets", line.len());
            }
        }
    }

    #[test]
    fn a_long_camera_name_leaves_room_for_the_label() {
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let mail = c
            .compose(&notification(&"Einfahrt".repeat(1_000), Ok(thumb(2, 1))))
            .unwrap();
        let raw = mail.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let subject = parsed.subject().unwrap();
        assert!(subject.ends_with("…: person (78%)"), "{subject}");
        assert_eq!(
            subject.chars().count(),
            SUBJECT_CAMERA + ": person (78%)".len()
        );
    }

    #[test]
    fn bidi_and_zero_width_characters_never_reach_the_mail() {
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let mut n = notification("drive\u{202E}yaw\u{200B}", Ok(thumb(2, 1)));
        n.event.label = Some("per\u{2066}son\u{2069}\u{FEFF}".into());
        n.event.sub_label = Some("Al\u{061C}ice\u{200F}".into());
        let mail = c.compose(&n).unwrap();
        let raw = mail.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("driveyaw: person Alice (78%)"));
        let html = parsed.body_html(0).unwrap();
        let text = parsed.body_text(0).unwrap();
        for body in [&html, &text] {
            assert!(!body.chars().any(crate::text::is_invisible), "{body:?}");
            assert!(
                body.contains("driveyaw") && body.contains("Alice"),
                "{body}"
            );
        }
    }

    #[test]
    fn times_show_in_the_configured_zone() {
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        let c = Composer::new("cam@example.com", &["me@example.com".into()])
            .unwrap()
            .with_time_zone(tokyo);
        let mail = c
            .compose(&notification("driveway", Ok(thumb(2, 1))))
            .unwrap();
        let raw = mail.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        // 1731254400 is 2024-11-10 16:00 UTC.
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("Time: 2024-11-11 01:00:00 JST"), "{text}");
    }

    #[test]
    fn plates_show_and_the_picture_fits_the_screen() {
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let mut n = notification("street", Ok(thumb(1280, 720)));
        n.event.label = Some("car".into());
        n.event.plate = Some("KX21ZPT".into());
        let mail = c.compose(&n).unwrap();
        let raw = mail.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("street: car KX21ZPT (78%)"));
        assert!(parsed.body_text(0).unwrap().contains("Plate: KX21ZPT"));
        let html = parsed.body_html(0).unwrap();
        assert!(
            html.contains(
                "<th align=\"left\" valign=\"top\" style=\"padding-right:8px\">Plate</th>"
            ),
            "{html}"
        );
        assert!(
            html.contains("name=\"viewport\" content=\"width=device-width"),
            "{html}"
        );
        let img = html
            .split("<img ")
            .nth(1)
            .expect("an img")
            .split('>')
            .next()
            .unwrap();
        assert!(
            img.contains("max-width:100%") && img.contains("height:auto"),
            "{img}"
        );
    }
}
