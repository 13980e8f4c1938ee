//! The SMTP steps: the credential's shape, DNS, TCP on the configured and the other port,
//! then TLS ([`super::tls`]), the login through the daemon's own transport, and an optional
//! test mail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapmail::config::{AuthMethod, PasswordShape, SmtpConfig};
use snapmail::mail::classify::{self, Failure};
use snapmail::mail::Mailer;
use snapmail::plan::Plan;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::args::{secs, DoctorArgs};
use super::report::Report;
use super::tls::{connect, read_reply, tls_steps};
use crate::cli::sample::{sample, test_mail};

pub(super) async fn smtp_steps(
    plan: &Plan,
    smtp: &SmtpConfig,
    tls: &Arc<rustls::ClientConfig>,
    args: &DoctorArgs,
    report: &mut Report,
) {
    let mailer = match Mailer::with_tls(smtp, tls.clone()) {
        Ok(m) => m,
        Err(e) => {
            report.fail("smtp setup", e.to_string(), "correct the key named above");
            return;
        }
    };
    let credentials_ok = credential_step(smtp, &mailer, report).await;

    // DNS.
    let t0 = Instant::now();
    let lookup = tokio::time::timeout(
        args.timeout,
        tokio::net::lookup_host((smtp.host.as_str(), smtp.port.0)),
    )
    .await;
    let addrs: Vec<SocketAddr> = match lookup {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            report.fail(
                "smtp dns",
                format!("cannot resolve smtp.host {:?}: {e}", smtp.host),
                "check the spelling of smtp.host (Gmail: smtp.gmail.com) and this machine's DNS settings",
            );
            report.skip(
                "smtp",
                "connection, TLS and login not checked: the host name does not resolve",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "smtp dns",
                format!(
                    "no answer for smtp.host {:?} within {}",
                    smtp.host,
                    secs(args.timeout)
                ),
                "this machine's DNS server does not answer; check the network settings",
            );
            report.skip(
                "smtp",
                "connection, TLS and login not checked: the host name does not resolve",
            );
            return;
        }
    };
    if addrs.is_empty() {
        report.fail(
            "smtp dns",
            format!("smtp.host {:?} has no addresses", smtp.host),
            "check the spelling of smtp.host (Gmail: smtp.gmail.com)",
        );
        return;
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    report.ok(
        "smtp dns",
        format!(
            "{} → {} ({} ms)",
            smtp.host,
            list.join(", "),
            t0.elapsed().as_millis()
        ),
    );

    // TCP on the configured and the other port.
    let port = smtp.port.0;
    let other = args
        .other_port
        .unwrap_or(if port == 587 { 465 } else { 587 });
    let with_port =
        |p: u16| -> Vec<SocketAddr> { addrs.iter().map(|a| SocketAddr::new(a.ip(), p)).collect() };
    let (main_addrs, other_addrs) = (with_port(port), with_port(other));
    let (main, alt) = tokio::join!(
        tcp_probe(&main_addrs, args.timeout),
        tcp_probe(&other_addrs, args.timeout)
    );
    let other_security = match (other, &main, &alt) {
        (465, _, _) => "tls",
        (587, _, _) => "starttls",
        // Only worth a probe when the fix will recommend that port.
        (_, Err(_), Ok(_)) => guess_security(&other_addrs, args.timeout).await,
        _ => "starttls",
    };
    match &main {
        Ok(ms) => report.ok(
            "smtp tcp",
            format!("connected to {}:{port} in {ms} ms", smtp.host),
        ),
        Err(why) => {
            let fix = match (&alt, why) {
                (Ok(_), _) => format!(
                    "port {port} is blocked by your network or ISP; {other} works: set smtp.port: {other} (with smtp.security: {other_security})"
                ),
                (Err(_), TcpFailure::Timeout) => format!(
                    "ports {port} and {other} are both blocked: outbound mail is blocked by a firewall or your ISP; try another network or ask the network's owner"
                ),
                (Err(_), _) => format!(
                    "nothing accepts connections on {}:{port}; check smtp.host and smtp.port (Gmail: 587 with starttls, or 465 with tls)",
                    smtp.host
                ),
            };
            report.fail(
                "smtp tcp",
                format!("{}:{port}: {}", smtp.host, why.describe(args.timeout)),
                fix,
            );
        }
    }
    match &alt {
        Ok(ms) => report.info(
            "smtp tcp",
            format!(
                "the other port {}:{other} also accepts connections ({ms} ms)",
                smtp.host
            ),
        ),
        Err(why) => report.info(
            "smtp tcp",
            format!(
                "the other port {}:{other}: {}",
                smtp.host,
                why.describe(args.timeout)
            ),
        ),
    }
    if main.is_err() {
        report.skip(
            "smtp",
            "TLS and login not checked: the port does not accept connections",
        );
        return;
    }

    // Greeting, TLS and EHLO on our own connection.
    let tls_ok = tls_steps(smtp, tls, &addrs, args.timeout, report).await;
    if !tls_ok {
        report.skip("smtp auth", "login not tried: fix the TLS step first");
        return;
    }

    // AUTH with the configured credentials, through the same transport the daemon uses.
    if !credentials_ok {
        report.skip("smtp auth", "login not tried: no access token");
        return;
    }
    let logged_in = match mailer.test_connection().await {
        Ok(()) => {
            let how = match smtp.auth {
                AuthMethod::Password => "app password",
                AuthMethod::Oauth2 => "XOAUTH2 access token",
            };
            report.ok(
                "smtp auth",
                format!("logged in as {} with the {how}", smtp.username),
            );
            true
        }
        Err(f) => {
            report.fail("smtp auth", failure_fact(&f), fix_for(&f));
            false
        }
    };

    // A real send, only when asked.
    if !args.send {
        report.skip(
            "smtp send",
            "no test mail sent; `snapmail doctor --send` (or `snapmail test-email`) sends one",
        );
        return;
    }
    if !logged_in {
        report.skip("smtp send", "no test mail sent: the login failed");
        return;
    }
    let (notification, origin) = sample(plan).await;
    let mail = match test_mail(
        smtp,
        args.to.as_deref(),
        &notification,
        plan.mail.time_zone(),
    ) {
        Ok(m) => m,
        Err(e) => {
            report.fail("smtp send", e, "give a valid address to --to or smtp.to");
            return;
        }
    };
    let to = mail.recipients();
    match mailer
        .send_raw(mail.message.envelope(), &mail.message.formatted())
        .await
    {
        Ok(a) => report.ok(
            "smtp send",
            format!(
                "test mail with {origin} sent to {}; the server answered {} {}",
                to.join(", "),
                a.code,
                a.text
            ),
        ),
        Err(f) => report.fail("smtp send", failure_fact(&f), fix_for(&f)),
    }
}

/// The app password's shape, or an XOAUTH2 access token. False when no login can work.
pub(super) async fn credential_step(
    smtp: &SmtpConfig,
    mailer: &Mailer,
    report: &mut Report,
) -> bool {
    match smtp.auth {
        AuthMethod::Password => {
            let raw = smtp.password.as_ref().map(|p| p.expose()).unwrap_or("");
            let spaces = raw.chars().filter(|c| c.is_whitespace()).count();
            let spaced = if spaces > 0 {
                format!(" (the {spaces} spaces are removed)")
            } else {
                String::new()
            };
            match smtp.app_password_shape() {
                PasswordShape::AppPassword => report.ok(
                    "app password",
                    format!(
                        "smtp.password is 16 letters{spaced}: the shape of a Gmail app password"
                    ),
                ),
                PasswordShape::Letters(n) => report.warn(
                    "app password",
                    format!(
                        "smtp.password is {n} letters{spaced}, but a Gmail app password has exactly 16: a letter was {} when copying",
                        if n < 16 { "lost" } else { "added" }
                    ),
                    "copy the app password again, or create a new one at https://myaccount.google.com/apppasswords",
                ),
                PasswordShape::Other {
                    chars,
                    digits,
                    symbols,
                } => {
                    let kinds: Vec<&str> = [(digits, "digits"), (symbols, "symbols")]
                        .into_iter()
                        .filter_map(|(has, kind)| has.then_some(kind))
                        .collect();
                    let with = if kinds.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", kinds.join(" and "))
                    };
                    report.warn(
                        "app password",
                        format!(
                            "smtp.password is {chars} characters{with}{spaced}, but a Gmail app password is 16 letters; this looks like an account password, which Gmail refuses with 534 5.7.9"
                        ),
                        "for Gmail, create an app password at https://myaccount.google.com/apppasswords (needs 2-Step Verification) and put it in smtp.password",
                    )
                }
            }
            true
        }
        AuthMethod::Oauth2 => {
            let Some(tokens) = mailer.token_source() else {
                return false;
            };
            let t0 = Instant::now();
            match tokens.refresh().await {
                Ok(t) => {
                    report.ok(
                        "oauth2 token",
                        format!(
                            "access token from {} in {} ms, valid for {}",
                            smtp.oauth2.token_url,
                            t0.elapsed().as_millis(),
                            humantime::format_duration(t.expires_in)
                        ),
                    );
                    true
                }
                Err(e) => {
                    let fix = match &e {
                        snapmail::mail::oauth::OAuthError::Revoked { .. } => {
                            "create a new refresh token with the https://mail.google.com/ scope and put it in smtp.oauth2.refresh_token"
                        }
                        snapmail::mail::oauth::OAuthError::Client { .. } => {
                            "copy smtp.oauth2.client_id and client_secret from the OAuth client in the Google Cloud console"
                        }
                        _ => "check smtp.oauth2.token_url (Google: https://oauth2.googleapis.com/token) and the network",
                    };
                    report.fail("oauth2 token", e.to_string(), fix);
                    false
                }
            }
        }
    }
}

#[derive(Debug)]
pub(super) enum TcpFailure {
    Timeout,
    Refused,
    Other(String),
}

impl TcpFailure {
    fn describe(&self, timeout: Duration) -> String {
        match self {
            TcpFailure::Timeout => format!(
                "no answer to the connection attempt within {}",
                secs(timeout)
            ),
            TcpFailure::Refused => "connection refused".into(),
            TcpFailure::Other(e) => e.clone(),
        }
    }
}

/// Connect time in milliseconds.
pub(super) async fn tcp_probe(addrs: &[SocketAddr], timeout: Duration) -> Result<u128, TcpFailure> {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addrs)).await {
        Ok(Ok(_)) => Ok(t0.elapsed().as_millis()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(TcpFailure::Refused),
        Ok(Err(e)) => Err(TcpFailure::Other(e.to_string())),
        Err(_) => Err(TcpFailure::Timeout),
    }
}

/// `starttls` if the port greets in plain text, else `tls`.
pub(super) async fn guess_security(addrs: &[SocketAddr], timeout: Duration) -> &'static str {
    match connect(addrs, timeout).await {
        Ok(s) => match read_reply(&mut BufReader::new(s), timeout).await {
            Ok(r) if r.code == 220 => "starttls",
            _ => "tls",
        },
        Err(_) => "tls",
    }
}

/// "Gmail answered 534 5.7.9 Application-specific password required."
pub(super) fn failure_fact(f: &Failure) -> String {
    match f.code {
        Some(code) => {
            // Multi-line replies arrive joined; the first sentence carries the meaning.
            let text = f
                .detail
                .split(" For more information")
                .next()
                .unwrap_or(&f.detail);
            // Gmail ends every reply with "<session id> - gsmtp"; it means nothing to a user.
            let text = match text.strip_suffix(" - gsmtp") {
                Some(t) => t.rsplit_once(' ').map_or(t, |(head, _id)| head),
                None => text,
            };
            let text = text.trim_end_matches('.');
            let text: String = text.chars().take(160).collect();
            if text.starts_with(&code.to_string()) {
                format!("the server answered {text}")
            } else {
                format!("the server answered {code} {text}")
            }
        }
        None => f.detail.chars().take(300).collect(),
    }
}

/// The fix for a failed login or send, in doctor's words.
pub(super) fn fix_for(f: &Failure) -> String {
    match (f.code, f.enhanced.as_deref()) {
        (Some(534), Some("5.7.9")) => "that is your Google account password; create an app password at https://myaccount.google.com/apppasswords (needs 2-Step Verification) and put it in smtp.password".into(),
        (Some(535), Some("5.7.8")) if f.hint == classify::HINT_BAD_CREDENTIALS => "wrong, revoked or mistyped app password; generate a new one at https://myaccount.google.com/apppasswords and put it in smtp.password (smtp.username must be the full Gmail address)".into(),
        (Some(454), Some("4.7.0")) => "too many login attempts; wait (an hour is usually enough) before trying again, and stop other programs logging in with this account".into(),
        (Some(550), Some("5.4.5")) => "Gmail's daily sending limit is used up (a rolling 24 h window): wait until it clears; raise rate_limit.cooldown so fewer mails go out".into(),
        (Some(552), _) => "the message is larger than Gmail accepts; lower snapshot.max_width / snapshot.max_image_bytes".into(),
        _ => f.hint.to_owned(),
    }
}
