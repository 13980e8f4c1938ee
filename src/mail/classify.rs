//! What an SMTP failure means, and what the user should do about it.
//!
//! Gmail's replies are classified by the pair (reply code, enhanced status code), never by
//! their text. The class decides what the outbox does (retry, pause, give up); the hint is
//! what the log tells the user.

use std::fmt;

use super::reply::enhanced_code;
use super::wire::{Mechanism, Need, SmtpError, Stage};

/// What to do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again later (network trouble, timeouts, 4xx).
    Transient,
    /// The login is wrong: stop sending and tell the user; retry rarely.
    Credentials,
    /// The server's TLS certificate is not trusted: only a change of configuration
    /// (`smtp.ca_file`, `smtp.host`) helps, so, like a refused login, stop and retry rarely.
    Certificate,
    /// The daily sending limit is used up: pause everything, keep queuing.
    Quota,
    /// The message is too big for the server.
    TooLarge,
    /// The server will never take this message.
    Permanent,
}

/// A classified SMTP failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: Class,
    /// The SMTP reply code, if the server answered.
    pub code: Option<u16>,
    /// The enhanced status code (`5.7.8`), if present.
    pub enhanced: Option<String>,
    /// The server's words or the local error, on one line.
    pub detail: String,
    /// What it means and what to do.
    pub hint: &'static str,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, &self.enhanced) {
            (Some(c), Some(e)) => write!(f, "{c} {e}: {}", self.hint)?,
            (Some(c), None) => write!(f, "{c}: {}", self.hint)?,
            _ => write!(f, "{}", self.hint)?,
        }
        write!(f, " (server said: {})", self.detail)
    }
}

pub const HINT_APP_PASSWORD_REQUIRED: &str = "Gmail wants an app password, not your Google account password: turn on 2-Step Verification, create an app password at https://myaccount.google.com/apppasswords and put it in smtp.password";
pub const HINT_BAD_CREDENTIALS: &str = "Gmail did not accept smtp.username / smtp.password: the app password is wrong, mistyped or revoked; create a new one at https://myaccount.google.com/apppasswords (smtp.username must be the full Gmail address)";
pub const HINT_WEB_LOGIN: &str = "Google wants you to sign in through a web browser once (https://accounts.google.com), then use an app password";
pub const HINT_STARTTLS_FIRST: &str = "the server requires STARTTLS before anything else: set smtp.security: starttls with smtp.port: 587, or smtp.port: 465 (implicit TLS)";
pub const HINT_AUTH_REQUIRED: &str =
    "the server requires a login: set smtp.username and smtp.password";
pub const HINT_TOO_MANY_LOGINS: &str = "Gmail saw too many login attempts and asks to wait; snapmail retries later — if it keeps happening, check smtp.password";
pub const HINT_QUOTA: &str = "Gmail's daily sending limit is used up (a rolling 24 h window); sending pauses and queued mail is kept — raise rate_limit.cooldown so fewer mails go out";
pub const HINT_TOO_LARGE: &str = "the message is larger than the server accepts; lower snapshot.max_width / snapshot.max_image_bytes";
pub const HINT_TEMPORARY: &str = "the server had a temporary problem; snapmail retries";
pub const HINT_REJECTED: &str = "the server refused this message permanently";
pub const HINT_TLS: &str = "the TLS handshake failed: port 465 needs smtp.security: tls, port 587 needs smtp.security: starttls; a server with a private or self-signed certificate needs smtp.ca_file";
pub const HINT_CERTIFICATE: &str = "the server's TLS certificate was refused: a server with a private CA or a self-signed certificate needs smtp.ca_file (the CA's or the server's own certificate, as PEM), and smtp.host must be a name the certificate is issued for";
pub const HINT_TIMEOUT: &str = "no answer within smtp.timeout: the port may be blocked by your network or ISP (try smtp.port: 465 with security: tls), or TLS and STARTTLS are mixed up";
pub const HINT_CONNECT: &str =
    "could not reach the SMTP server: check smtp.host / smtp.port and the network";
pub const HINT_OAUTH: &str =
    "the server refused the XOAUTH2 token; the access token is expired or revoked";

pub const HINT_NO_LOGIN: &str = "the server offers no login method snapmail can use (PLAIN or LOGIN for smtp.password, XOAUTH2 for smtp.auth: oauth2): check smtp.host, smtp.port and smtp.security";

pub const HINT_OAUTH_REFUSED: &str = "the server refused a freshly refreshed XOAUTH2 token: the refresh token must grant the https://mail.google.com/ scope, for the account in smtp.username";
pub const HINT_OAUTH_TOKEN: &str =
    "no XOAUTH2 access token could be had from smtp.oauth2.token_url; see the reason";

/// A failure to obtain an XOAUTH2 access token, in the same terms as an SMTP failure.
pub fn oauth_failure(e: &crate::mail::oauth::OAuthError) -> Failure {
    Failure {
        class: if e.is_transient() {
            Class::Transient
        } else {
            Class::Credentials
        },
        code: None,
        enhanced: None,
        detail: e.to_string(),
        hint: HINT_OAUTH_TOKEN,
    }
}

/// Whether this failure is the server refusing an XOAUTH2 token (worth one refresh).
pub fn is_oauth_refusal(f: &Failure) -> bool {
    f.hint == HINT_OAUTH || f.code == Some(535) || f.code == Some(334)
}

/// Classify a reply code plus enhanced code.
pub fn classify_reply(code: u16, enhanced: Option<&str>) -> (Class, &'static str) {
    match (code, enhanced) {
        (534, Some("5.7.9")) => (Class::Credentials, HINT_APP_PASSWORD_REQUIRED),
        (534, Some("5.7.14")) | (535, Some("5.7.1")) => (Class::Credentials, HINT_WEB_LOGIN),
        (535, _) => (Class::Credentials, HINT_BAD_CREDENTIALS),
        (534, _) => (Class::Credentials, HINT_BAD_CREDENTIALS),
        (530, Some("5.7.0")) | (530, Some("5.5.1")) => (Class::Credentials, HINT_AUTH_REQUIRED),
        (454, Some("4.7.0")) => (Class::Transient, HINT_TOO_MANY_LOGINS),
        (550, Some("5.4.5")) => (Class::Quota, HINT_QUOTA),
        (552, Some("5.3.4")) | (552, None) => (Class::TooLarge, HINT_TOO_LARGE),
        (400..=499, _) => (Class::Transient, HINT_TEMPORARY),
        _ => (Class::Permanent, HINT_REJECTED),
    }
}

/// What went wrong in the SMTP dialogue, as a classified failure.
pub fn smtp_failure(err: &SmtpError) -> Failure {
    match err {
        SmtpError::Refused { stage, reply } | SmtpError::Closing { stage, reply } => {
            let detail = reply.text();
            let code = reply.code;
            let enhanced = enhanced_code(&detail);
            let (class, hint) = if code == 530 && detail.contains("STARTTLS") {
                // "Must issue a STARTTLS command first" shares 530 5.7.0 with "Authentication
                // Required".
                (Class::Permanent, HINT_STARTTLS_FIRST)
            } else if *stage == Stage::Auth(Mechanism::XOAuth2) && matches!(code, 334 | 535) {
                // Gmail refuses a token with a 334 JSON challenge, then 535 once the client
                // has answered it: the token, not a password, is wrong.
                (Class::Credentials, HINT_OAUTH)
            } else {
                classify_reply(code, enhanced.as_deref())
            };
            Failure {
                class,
                code: Some(code),
                enhanced,
                detail,
                hint,
            }
        }
        SmtpError::Broken { detail, .. } => Failure {
            class: Class::Transient,
            code: None,
            enhanced: None,
            detail: one_line(detail),
            hint: HINT_CONNECT,
        },
        SmtpError::Unsupported { detail, need } => {
            let (class, hint) = match need {
                Need::StartTls => (Class::Transient, HINT_TLS),
                Need::Login => (Class::Credentials, HINT_NO_LOGIN),
                Need::Encoding => (Class::Permanent, HINT_REJECTED),
            };
            Failure {
                class,
                code: None,
                enhanced: None,
                detail: detail.clone(),
                hint,
            }
        }
    }
}

/// The server could not be reached (name lookup, TCP connect).
pub fn connect_failure(detail: String) -> Failure {
    Failure {
        class: Class::Transient,
        code: None,
        enhanced: None,
        detail,
        hint: HINT_CONNECT,
    }
}

/// The TLS handshake failed.
pub fn tls_failure(detail: String) -> Failure {
    // rustls' certificate verdicts say "certificate" (e.g. "invalid peer certificate:
    // UnknownIssuer"); everything else is a handshake problem, which may pass.
    let certificate = detail.contains("certificate");
    Failure {
        class: if certificate {
            Class::Certificate
        } else {
            Class::Transient
        },
        code: None,
        enhanced: None,
        hint: if certificate {
            HINT_CERTIFICATE
        } else {
            HINT_TLS
        },
        detail,
    }
}

/// A send that did not finish within `smtp.timeout`.
pub fn timeout_failure(secs: u64) -> Failure {
    Failure {
        class: Class::Transient,
        code: None,
        enhanced: None,
        detail: format!("no reply within {secs}s"),
        hint: HINT_TIMEOUT,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_codes() {
        assert_eq!(classify_reply(534, Some("5.7.9")).0, Class::Credentials);
        assert_eq!(
            classify_reply(534, Some("5.7.9")).1,
            HINT_APP_PASSWORD_REQUIRED
        );
        assert_eq!(classify_reply(535, Some("5.7.8")).1, HINT_BAD_CREDENTIALS);
        assert_eq!(classify_reply(550, Some("5.4.5")).0, Class::Quota);
        assert_eq!(classify_reply(552, Some("5.3.4")).0, Class::TooLarge);
        assert_eq!(classify_reply(421, Some("4.7.0")).0, Class::Transient);
        assert_eq!(classify_reply(451, Some("4.3.0")).0, Class::Transient);
        assert_eq!(classify_reply(454, Some("4.7.0")).1, HINT_TOO_MANY_LOGINS);
        assert_eq!(classify_reply(550, Some("5.1.1")).0, Class::Permanent);
    }

    #[test]
    fn enhanced_codes_from_text() {
        assert_eq!(
            enhanced_code("5.7.8 Username and Password not accepted. For more information, go to5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp").as_deref(),
            Some("5.7.8")
        );
        assert_eq!(enhanced_code("Try again later").as_deref(), None);
        assert_eq!(enhanced_code("OK 1.2.3.4 thing").as_deref(), None);
    }
}
