//! Composing the mail for a [`Notification`]: subject, HTML with the picture inline
//! (`cid:`), a plain-text alternative, and a stable `Message-ID`.
//!
//! Every value that came from a camera or a payload is untrusted: it is stripped of control
//! characters before it reaches a header (no header injection) and HTML-escaped before it
//! reaches the HTML part. lettre encodes non-ASCII headers (RFC 2047) itself.

use std::time::{SystemTime, UNIX_EPOCH};

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::snapshot::Notification;

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

/// Builds mails with fixed sender and recipients.
#[derive(Debug, Clone)]
pub struct Composer {
    from: Mailbox,
    to: Vec<Mailbox>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the mail: {0}")]
pub struct ComposeError(pub(crate) String);

impl Composer {
    pub fn new(from: &str, to: &[String]) -> Result<Composer, BadMailbox> {
        Ok(Composer {
            from: parse_mailbox(from)?,
            to: to
                .iter()
                .map(|t| parse_mailbox(t))
                .collect::<Result<_, _>>()?,
        })
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
        let camera = header_safe(&ev.camera);
        let subject = format!("{camera}: {}", header_safe(&ev.summary()));
        let when = local_time(ev.time);
        let message_id = new_message_id(ev.time);

        let mut facts: Vec<(&str, String)> = vec![("Camera", ev.camera.clone())];
        if let Some(label) = &ev.label {
            facts.push(("Object", label.clone()));
        }
        if let Some(sub) = &ev.sub_label {
            facts.push(("Recognised", sub.clone()));
        }
        if let Some(score) = ev.score {
            facts.push(("Score", format!("{:.0}%", score * 100.0)));
        }
        if !ev.zones.is_empty() {
            facts.push(("Zones", ev.zones.join(", ")));
        }
        facts.push(("Time", when));

        let mut text = String::new();
        for (k, v) in &facts {
            text.push_str(&format!("{k}: {}\n", strip_controls(v)));
        }
        let mut html = String::from(
            "<!doctype html><html><body style=\"font-family:sans-serif\">\n<table cellpadding=\"2\">\n",
        );
        for (k, v) in &facts {
            html.push_str(&format!(
                "<tr><th align=\"left\">{k}</th><td>{}</td></tr>\n",
                escape(v)
            ));
        }
        html.push_str("</table>\n");
        if let Some(link) = &ev.link {
            text.push_str(&format!("\nOpen in Frigate: {link}\n"));
            html.push_str(&format!(
                "<p><a href=\"{}\">Open in Frigate</a></p>\n",
                escape(link)
            ));
        }
        let image = match &n.picture {
            Ok(t) => {
                html.push_str(&format!(
                    "<p><img src=\"cid:snapshot\" width=\"{}\" height=\"{}\" alt=\"snapshot from {}\"></p>\n",
                    t.width,
                    t.height,
                    escape(&ev.camera)
                ));
                Some(t.jpeg.clone())
            }
            Err(why) => {
                let why = why.to_string();
                text.push_str(&format!("\nNo picture: {}\n", strip_controls(&why)));
                html.push_str(&format!("<p><em>No picture: {}</em></p>\n", escape(&why)));
                None
            }
        };
        html.push_str("</body></html>\n");

        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::plain(text))
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

/// A value safe to put in a header: no CR, LF or other control characters.
pub fn header_safe(s: &str) -> String {
    strip_controls(s).trim().to_owned()
}

pub(crate) fn strip_controls(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Minimal HTML escaping for text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `2024-11-10 17:20:00 CET` in the system (or `TZ`) time zone.
pub(crate) fn local_time(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
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
}
