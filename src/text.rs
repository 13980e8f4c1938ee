//! Text that came from a camera or a payload, made safe to show: in a mail header, a mail
//! body or a log line. A leaf: it knows no stage.
//!
//! Two kinds of character are never shown as they are. Control characters (CR, LF, NUL,
//! ESC, the C1 range, the Unicode line and paragraph separators) could start a new header
//! or log line or drive a terminal; they become a space. Invisible format characters —
//! bidirectional overrides, embeddings, isolates and marks (U+202A–U+202E, U+2066–U+2069,
//! U+200E/U+200F, U+061C), zero-width characters (U+200B–U+200D, U+2060, U+FEFF) and the
//! like — show nothing themselves but change how the text around them reads: "U+202E" makes
//! `gpj.exe` look like `exe.jpg`. They are dropped.
//!
//! Every place that shows payload text goes through [`clean`] or [`one_line`]; nothing else
//! decides what is shown.

/// Characters that change how text is displayed without being visible themselves.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{061C}'                    // Arabic letter mark
        | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'       // Mongolian selectors and vowel separator
        | '\u{200B}'..='\u{200F}'       // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, bidi isolates
        | '\u{FEFF}'                    // zero-width no-break space (BOM)
        | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation
        | '\u{1BCA0}'..='\u{1BCA3}'     // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'     // musical format controls
        | '\u{E0000}'..='\u{E007F}' // tag characters
    )
}

/// Characters that would break a line or drive a terminal.
fn is_line_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` with control characters as spaces and invisible format characters removed.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !is_invisible(*c))
        .map(|c| if is_line_control(c) { ' ' } else { c })
        .collect()
}

/// `s` cleaned, on one line with runs of white space as one space, trimmed, and at most
/// `max_chars` characters long (cut at a character boundary, ending in `…`).
pub fn one_line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    let mut space = false;
    for c in s.chars().filter(|c| !is_invisible(*c)) {
        if c.is_whitespace() || is_line_control(c) {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    clip(&out, max_chars)
}

/// At most `max_chars` characters of `s`; a cut one ends in `…`.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some(_) => {
            let keep = max_chars.saturating_sub(1);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            let mut out = s[..end].trim_end().to_owned();
            out.push('…');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_dropped() {
        let hostile = "drive\u{202E}yaw\u{202C}\u{200B}\u{2066}x\u{2069}\u{FEFF}\u{061C}\u{200F}";
        assert_eq!(clean(hostile), "driveyawx");
        assert_eq!(one_line(hostile, 100), "driveyawx");
        for c in [
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200D}',
        ] {
            assert!(is_invisible(c), "{:?}", c);
        }
        // Ordinary letters of other scripts stay.
        assert_eq!(clean("Einfahrt Süd 東京 حديقة"), "Einfahrt Süd 東京 حديقة");
    }

    #[test]
    fn controls_become_spaces_and_one_line_collapses_them() {
        assert_eq!(
            clean("a\r\nb\u{0}c\u{1b}[31m\u{85}d\u{2028}e"),
            "a  b c [31m d e"
        );
        assert_eq!(
            one_line("  x\r\nBcc: evil@example.com \t ", 100),
            "x Bcc: evil@example.com"
        );
    }

    #[test]
    fn clipping_cuts_at_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly10!", 10), "exactly10!");
        assert_eq!(clip("abcdefghijk", 10), "abcdefghi…");
        let long = "ü".repeat(300);
        let c = clip(&long, 200);
        assert_eq!(c.chars().count(), 200);
        assert!(c.ends_with("ü…"));
        assert_eq!(one_line(&"x".repeat(10_000), 200).chars().count(), 200);
        // No trailing space before the ellipsis.
        assert_eq!(clip("abcd efgh", 6), "abcd…");
    }
}
