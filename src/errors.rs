//! Text for error messages that every stage shares: an error with its causes on one line,
//! and a URL with its credentials removed. A leaf: it knows no stage.

use reqwest::Url;

/// `url` without any user name or password in it, for messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() || !u.username().is_empty() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("http://admin:s3cret@cam.lan/x"),
            "http://cam.lan/x"
        );
        assert_eq!(redact_url("http://cam.lan/x"), "http://cam.lan/x");
    }
}
