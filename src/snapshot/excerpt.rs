//! What an answer that is not a picture may show of itself in a log line or a mail.
//!
//! A snapshot URL can answer with anything: a login page, a JSON error, a directory listing,
//! a file that was never meant to leave the server. The mail and the log say what came back
//! so the user can fix the URL, but only as a short excerpt of text: control and
//! bidirectional-override characters removed (they could forge log lines or reorder what
//! the reader sees), cut to [`MAX_CHARS`], and marked as the server's words. A binary body is
//! never quoted; it is described by its size and content type.

/// The longest excerpt quoted, in characters.
pub const MAX_CHARS: usize = 60;

/// `body` in a few words: `"1234 bytes of text/html, beginning \"<!doctype html>…\""`, or
/// `"1234 bytes of application/octet-stream"` for anything that is not text.
pub fn describe(body: &[u8], content_type: Option<&str>) -> String {
    let kind = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(printable);
    let size = match body.len() {
        1 => "1 byte".to_owned(),
        n => format!("{n} bytes"),
    };
    let Some(text) = text_of(body, kind.as_deref()) else {
        return match kind {
            Some(kind) => format!("{size} of {kind}"),
            None => format!("{size} of binary data"),
        };
    };
    let kind = kind.unwrap_or_else(|| "text".to_owned());
    let quoted = excerpt(&text);
    if quoted.is_empty() {
        return format!("{size} of {kind}, blank");
    }
    format!("{size} of {kind}, beginning \"{quoted}\"")
}

/// The first [`MAX_CHARS`] characters of `text` fit for one line: controls and line breaks
/// become spaces, runs of spaces one, invisible formatting characters go, and a cut ends in
/// `…`.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut space = false;
    for c in text.chars() {
        if is_invisible(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if chars == MAX_CHARS {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
            if chars == MAX_CHARS {
                out.push('…');
                return out;
            }
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// The start of `body` as text, if it is text: a textual content type, or none and bytes
/// that are UTF-8 without NULs. Only the start is looked at; the rest is never quoted.
fn text_of(body: &[u8], kind: Option<&str>) -> Option<String> {
    let textual = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.starts_with("text/")
            || k.ends_with("+xml")
            || k.ends_with("+json")
            || matches!(
                k.as_str(),
                "application/json" | "application/xml" | "application/javascript"
            )
    };
    if kind.is_some_and(|k| !textual(k)) {
        return None;
    }
    let head = &body[..body.len().min(MAX_CHARS * 4 + 4)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A cut in the middle of a character is fine; anything else is not UTF-8 text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    (!text.contains('\0')).then(|| text.to_owned())
}

/// Characters that change how the text around them is shown without being seen: bidi
/// embeddings, overrides and isolates, zero-width characters, the byte order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A header value (the content type) fit to print: it comes from the server too.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .take(60)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_to_one_short_line() {
        let body = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n";
        let d = describe(body.as_bytes(), Some("text/plain; charset=utf-8"));
        assert!(
            d.starts_with(&format!(
                "{} bytes of text/plain, beginning \"root:x:0:0",
                body.len()
            )),
            "{d}"
        );
        assert!(d.ends_with("…\""), "{d}");
        assert!(!d.contains('\n') && !d.contains("bin:x:2:2"), "{d}");
        let quoted = d.split('"').nth(1).unwrap();
        assert_eq!(quoted.chars().count(), MAX_CHARS + 1, "{quoted}");
    }

    #[test]
    fn controls_and_bidi_overrides_are_removed() {
        let body = "ok\r\n2026-01-01 INFO forged line\u{202E}gpj.exe\u{202C}\u{200B}\x1b[31m";
        let d = describe(body.as_bytes(), Some("text/html"));
        for bad in ['\r', '\n', '\u{202E}', '\u{202C}', '\u{200B}', '\x1b'] {
            assert!(!d.contains(bad), "{bad:?} in {d:?}");
        }
        assert!(
            d.contains("ok 2026-01-01 INFO forged linegpj.exe [31m"),
            "{d}"
        );
    }

    #[test]
    fn binary_bodies_are_never_quoted() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0secret-looking text after the header";
        assert_eq!(
            describe(elf, Some("application/octet-stream")),
            format!("{} bytes of application/octet-stream", elf.len())
        );
        assert_eq!(
            describe(elf, None),
            format!("{} bytes of binary data", elf.len())
        );
        // A textual type does not make binary bytes text.
        assert_eq!(
            describe(&[0xFF, 0xFE, 0x00, 0x41], Some("text/plain")),
            "4 bytes of text/plain"
        );
        // Text sent as an image type is not quoted either.
        assert_eq!(
            describe(b"hello", Some("image/jpeg")),
            "5 bytes of image/jpeg"
        );
    }

    #[test]
    fn untyped_text_blank_bodies_and_cut_characters() {
        assert_eq!(
            describe(b"Not Found", None),
            "9 bytes of text, beginning \"Not Found\""
        );
        assert_eq!(
            describe(b" \r\n", Some("text/plain")),
            "3 bytes of text/plain, blank"
        );
        // A multi-byte character cut by the look-ahead limit does not make it binary.
        let long = "é".repeat(500);
        assert!(describe(long.as_bytes(), None).contains("beginning \"éé"));
        assert_eq!(
            describe(b"x", Some("text/plain\u{202E}")),
            "1 byte of text/plain, beginning \"x\""
        );
    }
}
