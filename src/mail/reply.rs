//! SMTP replies and EHLO capabilities, parsed from the bytes the server sent.
//!
//! A reply is one or more lines `NNN-text` ending with a line `NNN text` (RFC 5321 4.2).
//! [`parse`] takes a buffer that may hold several replies (pipelined answers arrive
//! together) or only part of one, and returns the first complete reply and its length.
//! [`Capabilities`] reads the extensions an EHLO reply announces.

use std::fmt;

/// Longest reply accepted; a server sending more is broken or hostile.
pub const MAX_REPLY: usize = 64 * 1024;

/// One SMTP reply: its code and the text of each line (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// The lines joined with single spaces, whitespace runs collapsed.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .flat_map(|l| l.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The enhanced status code (`5.7.8`) the reply starts with, if any.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.lines.first()?;
        enhanced_code(first)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete reply and how many bytes it took.
    Reply(Reply, usize),
    /// Not a whole reply yet: read more.
    Partial,
    /// Not SMTP.
    Malformed(String),
}

/// The first reply in `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_REPLY {
                Parsed::Malformed(format!("a reply longer than {MAX_REPLY} bytes"))
            } else {
                Parsed::Partial
            };
        };
        let raw = &buf[pos..pos + nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        let (this, last, text) = match parse_line(line) {
            Some(l) => l,
            None => {
                let shown: String = String::from_utf8_lossy(line).chars().take(80).collect();
                return Parsed::Malformed(format!("not an SMTP reply: {shown:?}"));
            }
        };
        // The code of the first line counts; RFC 5321 wants the same code on every line.
        let code = *code.get_or_insert(this);
        lines.push(text);
        if last {
            return Parsed::Reply(Reply { code, lines }, pos);
        }
    }
}

/// `(code, is_last_line, text)` of one reply line.
fn parse_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, rest) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return None,
    };
    Some((code, last, String::from_utf8_lossy(rest).into_owned()))
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920: commands may be sent without waiting for each reply.
    pub pipelining: bool,
    /// RFC 3030: `BDAT` sends the message as a counted chunk, no dot-stuffing.
    pub chunking: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// RFC 1870: the largest message accepted (`SIZE 0` or no number: no limit given).
    pub size: Option<u64>,
    /// SASL mechanisms offered, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Read the keywords of an EHLO reply; its first line is the server's greeting.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // Old servers write `AUTH=LOGIN PLAIN`.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k, Some(p)),
                None => (keyword, None),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => {
                    caps.size = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                "AUTH" => {
                    for mech in first_param.into_iter().chain(words) {
                        let mech = mech.to_ascii_uppercase();
                        if !mech.is_empty() && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

/// Find the first enhanced status code (`d.d.d`) in a reply text.
pub fn enhanced_code(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(buf: &str) -> (Reply, usize) {
        match parse(buf.as_bytes()) {
            Parsed::Reply(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_single_line_reply() {
        let (r, n) = reply("250 2.1.0 OK x - gsmtp\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["2.1.0 OK x - gsmtp"]);
        assert_eq!(n, 24);
        assert!(r.is_positive());
        assert_eq!(r.enhanced().as_deref(), Some("2.1.0"));
    }

    #[test]
    fn a_multi_line_reply_is_joined_and_keeps_its_enhanced_code() {
        let text = "535-5.7.8 Username and Password not accepted. For more information, go to\r\n\
                    535 5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp\r\n";
        let (r, n) = reply(text);
        assert_eq!(n, text.len());
        assert_eq!(r.code, 535);
        assert_eq!(r.lines.len(), 2);
        assert_eq!(
            r.text(),
            "5.7.8 Username and Password not accepted. For more information, go to 5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp"
        );
        assert_eq!(r.enhanced().as_deref(), Some("5.7.8"));
    }

    #[test]
    fn pipelined_replies_come_out_one_at_a_time() {
        let buf = "250 2.1.0 OK\r\n250 2.1.5 OK\r\n250-2.0.0 OK\r\n250 2.0.0 done\r\n";
        let (first, n) = reply(buf);
        assert_eq!(first.lines, ["2.1.0 OK"]);
        let (second, m) = reply(&buf[n..]);
        assert_eq!(second.lines, ["2.1.5 OK"]);
        let (third, k) = reply(&buf[n + m..]);
        assert_eq!(third.lines, ["2.0.0 OK", "2.0.0 done"]);
        assert_eq!(n + m + k, buf.len());
    }

    #[test]
    fn an_incomplete_reply_asks_for_more() {
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"250 2.1"), Parsed::Partial);
        assert_eq!(parse(b"250-first line\r\n250 sec"), Parsed::Partial);
    }

    #[test]
    fn bare_codes_and_bare_line_feeds_are_accepted() {
        let (r, _) = reply("220\n");
        assert_eq!((r.code, r.lines.len()), (220, 1));
        assert_eq!(r.text(), "");
        let (r, _) = reply("354 Go ahead\n");
        assert!(r.is_intermediate());
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse(b"HTTP/1.1 400 Bad Request\r\n"),
            Parsed::Malformed(_)
        ));
        assert!(matches!(parse(b"250x\r\n"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"650 no\r\n"), Parsed::Malformed(_)));
        let endless = vec![b'2'; MAX_REPLY + 1];
        assert!(matches!(parse(&endless), Parsed::Malformed(_)));
    }

    #[test]
    fn gmail_capabilities_before_and_after_tls() {
        let (before, _) = reply(
            "250-smtp.gmail.com at your service, [203.0.113.5]\r\n\
             250-SIZE 35882577\r\n250-8BITMIME\r\n250-STARTTLS\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        let caps = Capabilities::from_ehlo(&before);
        assert!(caps.starttls && caps.pipelining && caps.chunking);
        assert!(caps.eight_bit_mime && caps.smtputf8);
        assert_eq!(caps.size, Some(35_882_577));
        assert!(caps.auth.is_empty());

        let (after, _) = reply(
            "250-smtp.gmail.com at your service\r\n250-SIZE 35882577\r\n\
             250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n\
             250 PIPELINING\r\n",
        );
        let caps = Capabilities::from_ehlo(&after);
        assert!(!caps.starttls && !caps.chunking);
        assert!(caps.offers_auth("PLAIN") && caps.offers_auth("XOAUTH2"));
        assert!(caps.offers_auth("LOGIN") && !caps.offers_auth("CRAM-MD5"));
    }

    #[test]
    fn old_style_auth_and_unlimited_size() {
        let (r, _) = reply("250-mail.example\r\n250-AUTH=login plain\r\n250 SIZE\r\n");
        let caps = Capabilities::from_ehlo(&r);
        assert_eq!(caps.auth, ["LOGIN", "PLAIN"]);
        assert_eq!(caps.size, None);
        let (r, _) = reply("250-x\r\n250 SIZE 0\r\n");
        assert_eq!(Capabilities::from_ehlo(&r).size, None);
    }

    #[test]
    fn the_greeting_line_is_not_a_keyword() {
        // A server called "PIPELINING" does not offer pipelining.
        let (r, _) = reply("250 PIPELINING\r\n");
        assert!(!Capabilities::from_ehlo(&r).pipelining);
    }
}
