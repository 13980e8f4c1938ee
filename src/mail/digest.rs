//! Composing the digest mail: what the rate limits held back on one camera, as one
//! message with a headline ("7 more events on driveway since 21:03 — 5 person, 2 car"),
//! a line per sampled event and its small snapshot inline.
//!
//! The snapshots go in as separate inline images (`cid:digest-N`) rather than one
//! contact-sheet JPEG: each keeps its own caption and link, a missing picture costs one
//! line instead of a blank tile, and no extra image compositing runs on the host. At the
//! default `digest.image_size` (480 px) six pictures stay well under a megabyte.
//!
//! Like the single mail ([`super::compose`]), the subject is bounded and cleaned, times are
//! in the configured zone and the pictures shrink to the screen.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};

use super::compose::{
    escape, header_text, html_start, img, new_message_id, ComposeError, Composer, Mail, WRAP,
};
use crate::policy::Digest;
use crate::snapshot::image::Thumbnail;
use crate::snapshot::PictureError;
use crate::text;

/// Build the digest mail; `pictures[i]` belongs to `digest.samples[i]`.
pub fn compose(
    composer: &Composer,
    digest: &Digest,
    pictures: &[Result<Thumbnail, PictureError>],
) -> Result<Mail, ComposeError> {
    let headline = text::one_line(&digest.headline(), 1000);
    let subject = header_text(&headline);
    let sent = std::time::SystemTime::now();
    let message_id = new_message_id(sent);

    let mut plain = format!("{headline}\n\n");
    let mut html = html_start();
    html.push_str(&format!(
        "<p style=\"{WRAP}\"><strong>{}</strong></p>\n",
        escape(&headline)
    ));
    if digest.samples.len() < digest.count {
        let shown = digest.samples.len();
        plain.push_str(&format!("The first {shown} of them:\n"));
        html.push_str(&format!("<p>The first {shown} of them:</p>\n"));
    }
    let mut images = Vec::new();
    for (i, ev) in digest.samples.iter().enumerate() {
        let line = format!("{} — {}", composer.local_time(ev.time), ev.summary());
        plain.push_str(&format!("- {line}"));
        html.push_str(&format!("<p style=\"{WRAP}\">{}", escape(&line)));
        if let Some(link) = &ev.link {
            plain.push_str(&format!(" {}", text::clean(link)));
            html.push_str(&format!(" <a href=\"{}\">open</a>", escape(link)));
        }
        html.push_str("<br>\n");
        match pictures.get(i) {
            Some(Ok(t)) => {
                let cid = format!("digest-{i}");
                html.push_str(&img(&cid, t, &ev.summary()));
                images.push((cid, t.jpeg.clone()));
            }
            Some(Err(why)) => {
                let why = why.to_string();
                plain.push_str(&format!(" (no picture: {})", text::clean(&why)));
                html.push_str(&format!("<em>No picture: {}</em>", escape(&why)));
            }
            None => {}
        }
        plain.push('\n');
        html.push_str("</p>\n");
    }
    html.push_str("</body></html>\n");

    let mut related = MultiPart::related().singlepart(SinglePart::html(html));
    for (cid, jpeg) in images {
        related = related.singlepart(
            Attachment::new_inline(cid)
                .body(jpeg, ContentType::parse("image/jpeg").expect("valid")),
        );
    }
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(plain))
        .multipart(related);
    super::compose::finish(
        composer.from_mailbox(),
        composer.to_mailboxes(),
        subject,
        message_id,
        sent,
        alternative,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn headline_subject_samples_and_inline_pictures() {
        let mut samples = Vec::new();
        for i in 0..3 {
            let mut e = Event::new("test", i.to_string(), "driveway");
            e.label = Some(if i == 2 { "car" } else { "person" }.into());
            samples.push(e);
        }
        let d = Digest {
            camera: "driveway".into(),
            count: 7,
            since: "2026-11-23T20:03:00Z".parse().unwrap(),
            since_text: "21:03".into(),
            labels: vec![("person".into(), 5), ("car".into(), 2)],
            samples,
        };
        let thumb = Thumbnail {
            jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            width: 2,
            height: 1,
            source_width: 2,
            source_height: 1,
            source_format: "jpeg",
        };
        let missing = crate::snapshot::http::FetchError::NoSource("404".into());
        let pics = vec![Ok(thumb.clone()), Err(missing.into()), Ok(thumb)];
        let c = Composer::new("cam@example.com", &["me@example.com".into()]).unwrap();
        let mail = compose(&c, &d, &pics).unwrap();
        let raw = String::from_utf8(mail.message.formatted()).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("7 more events on driveway since 21:03 — 5 person, 2 car")
        );
        assert!(raw.contains("Content-ID: <digest-0>"), "{raw}");
        assert!(raw.contains("Content-ID: <digest-2>"));
        assert!(!raw.contains("Content-ID: <digest-1>"));
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("The first 3 of them"), "{text}");
        assert!(text.contains("no picture: 404"), "{text}");
    }

    #[test]
    fn long_hostile_headlines_are_bounded_and_times_are_local() {
        let mut e = Event::new("test", "1", "x".repeat(5_000));
        e.label = Some("per\u{202E}son".repeat(500));
        e.time = "2026-11-23T20:03:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .into();
        let d = Digest {
            camera: e.camera.clone(),
            count: 2,
            since: "2026-11-23T20:03:00Z".parse().unwrap(),
            since_text: "05:03".into(),
            labels: vec![(e.label.clone().unwrap(), 2)],
            samples: vec![e],
        };
        let c = Composer::new("cam@example.com", &["me@example.com".into()])
            .unwrap()
            .with_time_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap());
        let mail = compose(&c, &d, &[]).unwrap();
        let raw = mail.message.formatted();
        for line in String::from_utf8_lossy(&raw).split("\r\n") {
            assert!(line.len() <= 998, "{} octets", line.len());
        }
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let subject = parsed.subject().unwrap();
        assert!(subject.chars().count() <= super::super::compose::SUBJECT_MAX);
        assert!(!subject.contains('\u{202E}'), "{subject:?}");
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("2026-11-24 05:03:00 JST"), "{text}");
    }
}
