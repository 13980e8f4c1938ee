//! Composing the digest mail: what the rate limits held back on one camera, as one
//! message with a headline ("7 more events on driveway since 21:03 — 5 person, 2 car"),
//! a line per sampled event and its small snapshot inline.
//!
//! The snapshots go in as separate inline images (`cid:digest-N`) rather than one
//! contact-sheet JPEG: each keeps its own caption and link, a missing picture costs one
//! line instead of a blank tile, and no extra image compositing runs on the host. At the
//! default `digest.image_size` (480 px) six pictures stay well under a megabyte.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};

use super::compose::{
    escape, header_safe, local_time, new_message_id, strip_controls, ComposeError, Composer, Mail,
};
use crate::policy::Digest;
use crate::snapshot::image::Thumbnail;
use crate::snapshot::PictureError;

/// Build the digest mail; `pictures[i]` belongs to `digest.samples[i]`.
pub fn compose(
    composer: &Composer,
    digest: &Digest,
    pictures: &[Result<Thumbnail, PictureError>],
) -> Result<Mail, ComposeError> {
    let headline = digest.headline();
    let subject = header_safe(&headline);
    let sent = std::time::SystemTime::now();
    let message_id = new_message_id(sent);

    let mut text = format!("{}\n\n", strip_controls(&headline));
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\n<p><strong>{}</strong></p>\n",
        escape(&headline)
    );
    if digest.samples.len() < digest.count {
        let shown = digest.samples.len();
        text.push_str(&format!("The first {shown} of them:\n"));
        html.push_str(&format!("<p>The first {shown} of them:</p>\n"));
    }
    let mut images = Vec::new();
    for (i, ev) in digest.samples.iter().enumerate() {
        let line = format!("{} — {}", local_time(ev.time), ev.summary());
        text.push_str(&format!("- {}", strip_controls(&line)));
        html.push_str(&format!("<p>{}", escape(&line)));
        if let Some(link) = &ev.link {
            text.push_str(&format!(" {link}"));
            html.push_str(&format!(" <a href=\"{}\">open</a>", escape(link)));
        }
        html.push_str("<br>\n");
        match pictures.get(i) {
            Some(Ok(t)) => {
                let cid = format!("digest-{i}");
                html.push_str(&format!(
                    "<img src=\"cid:{cid}\" width=\"{}\" height=\"{}\" alt=\"{}\">",
                    t.width,
                    t.height,
                    escape(&ev.summary())
                ));
                images.push((cid, t.jpeg.clone()));
            }
            Some(Err(why)) => {
                let why = why.to_string();
                text.push_str(&format!(" (no picture: {})", strip_controls(&why)));
                html.push_str(&format!("<em>No picture: {}</em>", escape(&why)));
            }
            None => {}
        }
        text.push('\n');
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
        .singlepart(SinglePart::plain(text))
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
}
