//! `snapmail doctor`: walk the whole path from config to inbox step by step, measure each
//! step, and name the fix for whatever fails.
//!
//! Steps run in order and carry on past a failure wherever a later step can still tell
//! something (a broken SMTP login does not stop the MQTT check). Each step prints one line:
//! `✔` passed, `✘` failed (with the fix), `!` a warning, `-` skipped, `·` a detail. The exit
//! code is 0 only when no step failed; `--json` prints the steps as a JSON array instead.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, Packet, QoS};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use snapmail::config::{AuthMethod, Config, Security, SmtpConfig};
use snapmail::mail::classify::{self, Failure};
use snapmail::mail::Mailer;
use snapmail::snapshot::image::{Limits, Thumbnail};
use snapmail::sources::{self, mqtt::BrokerAddress, Decoded, Message};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Also send one test mail, proving the whole path to the inbox.
    #[arg(long)]
    pub send: bool,
    /// Recipient of the test mail (default: smtp.to).
    #[arg(long, requires = "send")]
    pub to: Option<String>,
    /// How long to listen to the MQTT topics, e.g. 10s or 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub listen: Duration,
    /// Time limit of each network probe (DNS, TCP connect, greeting, TLS handshake).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The alternative SMTP port to try when the configured one is blocked
    /// (default: 465 for 587 and 587 for anything else).
    #[arg(long)]
    pub other_port: Option<u16>,
    /// Print the steps as a JSON array (for scripts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Fail,
    Warn,
    Skip,
    Info,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✔",
            Status::Fail => "✘",
            Status::Warn => "!",
            Status::Skip => "-",
            Status::Info => "  ·",
        }
    }
}

#[derive(Debug, Serialize)]
struct Step {
    step: String,
    status: Status,
    /// What was measured.
    fact: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

struct Report {
    json: bool,
    steps: Vec<Step>,
}

impl Report {
    fn add(&mut self, step: &str, status: Status, fact: impl Into<String>, fix: Option<String>) {
        let step = Step {
            step: step.to_owned(),
            status,
            fact: fact.into(),
            fix,
        };
        if !self.json {
            let mut line = format!("{} {}: {}", step.status.symbol(), step.step, step.fact);
            if let Some(fix) = &step.fix {
                line.push_str(" → fix: ");
                line.push_str(fix);
            }
            println!("{line}");
        }
        self.steps.push(step);
    }
    fn ok(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Ok, fact, None);
    }
    fn fail(&mut self, step: &str, fact: impl Into<String>, fix: impl Into<String>) {
        self.add(step, Status::Fail, fact, Some(fix.into()));
    }
    fn warn(&mut self, step: &str, fact: impl Into<String>, fix: impl Into<String>) {
        self.add(step, Status::Warn, fact, Some(fix.into()));
    }
    fn skip(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Skip, fact, None);
    }
    fn info(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Info, fact, None);
    }
    fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == Status::Fail)
    }
}

pub fn run(config_path: Option<&Path>, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report {
        json: args.json,
        steps: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Loading reads files: done before the runtime, not on it.
    let loaded = snapmail::config::load(config_path);
    runtime.block_on(diagnose(config_path, loaded, &args, &mut report));
    // A hung DNS lookup must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.steps)?);
    } else if report.failed() {
        println!("✘ doctor: some steps failed; the first ✘ line is the one to fix first");
    } else {
        println!("✔ doctor: everything checked works");
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn diagnose(
    config_path: Option<&Path>,
    loaded: Result<Config, snapmail::config::ConfigError>,
    args: &DoctorArgs,
    report: &mut Report,
) {
    snapmail::tls::install_crypto_provider();
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                "config",
                e.to_string(),
                "correct the key named above; `snapmail check` prints the effective configuration",
            );
            return;
        }
    };
    let shown = config_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no file: embedded defaults and SNAPMAIL__ variables)".into());
    report.ok("config", format!("{shown} is valid"));

    match &config.smtp {
        Some(smtp) => smtp_steps(&config, smtp, args, report).await,
        None => report.warn(
            "smtp",
            "no smtp section: preview mode, mails are written as .eml files and nothing is sent",
            "add smtp.username and smtp.password (a Gmail app password)",
        ),
    }
    mqtt_steps(&config, args, report).await;
    snapshot_steps(&config, report).await;
}

// ------------------------------------------------------------------------------------------
// SMTP

async fn smtp_steps(config: &Config, smtp: &SmtpConfig, args: &DoctorArgs, report: &mut Report) {
    let mailer = match Mailer::new(smtp) {
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
    let tls_ok = tls_steps(smtp, &addrs, args.timeout, report).await;
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
    let (notification, origin) = super::test_email::sample(config).await;
    let mail = match super::test_email::test_mail(smtp, args.to.as_deref(), &notification) {
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
async fn credential_step(smtp: &SmtpConfig, mailer: &Mailer, report: &mut Report) -> bool {
    match smtp.auth {
        AuthMethod::Password => {
            let raw = smtp.password.as_ref().map(|p| p.expose()).unwrap_or("");
            let password = smtp.app_password();
            let p = password.expose();
            let spaces = raw.chars().filter(|c| c.is_whitespace()).count();
            let spaced = if spaces > 0 {
                format!(" (the {spaces} spaces are removed)")
            } else {
                String::new()
            };
            if p.len() == 16 && p.chars().all(|c| c.is_ascii_alphabetic()) {
                report.ok(
                    "app password",
                    format!(
                        "smtp.password is 16 letters{spaced}: the shape of a Gmail app password"
                    ),
                );
            } else {
                let mut kinds = Vec::new();
                if p.chars().any(|c| c.is_ascii_digit()) {
                    kinds.push("digits");
                }
                if p.chars().any(|c| !c.is_alphanumeric()) {
                    kinds.push("symbols");
                }
                let with = if kinds.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", kinds.join(" and "))
                };
                report.warn(
                    "app password",
                    format!(
                        "smtp.password is {} characters{with}{spaced}, but a Gmail app password is 16 letters; this looks like an account password, which Gmail refuses with 534 5.7.9",
                        p.chars().count()
                    ),
                    "for Gmail, create an app password at https://myaccount.google.com/apppasswords (needs 2-Step Verification) and put it in smtp.password",
                );
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
enum TcpFailure {
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
async fn tcp_probe(addrs: &[SocketAddr], timeout: Duration) -> Result<u128, TcpFailure> {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addrs)).await {
        Ok(Ok(_)) => Ok(t0.elapsed().as_millis()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(TcpFailure::Refused),
        Ok(Err(e)) => Err(TcpFailure::Other(e.to_string())),
        Err(_) => Err(TcpFailure::Timeout),
    }
}

/// `starttls` if the port greets in plain text, else `tls`.
async fn guess_security(addrs: &[SocketAddr], timeout: Duration) -> &'static str {
    match connect(addrs, timeout).await {
        Ok(s) => match read_reply(&mut BufReader::new(s), timeout).await {
            Ok(r) if r.code == 220 => "starttls",
            _ => "tls",
        },
        Err(_) => "tls",
    }
}

async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addrs)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {}", secs(timeout))),
    }
}

/// Greeting, TLS (implicit or STARTTLS, matched against the port's behaviour) and EHLO.
/// True when the TLS session came up and the login mechanism is offered.
async fn tls_steps(
    smtp: &SmtpConfig,
    addrs: &[SocketAddr],
    timeout: Duration,
    report: &mut Report,
) -> bool {
    let addrs: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::new(a.ip(), smtp.port.0))
        .collect();
    let tls = match tls_connector(smtp).await {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                "smtp tls",
                e,
                "give smtp.ca_file a PEM certificate, or remove the key",
            );
            return false;
        }
    };
    let port = smtp.port.0;
    let stream = match connect(&addrs, timeout).await {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                "smtp tls",
                e,
                "the port accepted a connection a moment ago; try again",
            );
            return false;
        }
    };
    let t0 = Instant::now();
    match smtp.security() {
        Security::Starttls => {
            let mut plain = BufReader::new(stream);
            let greeting = match read_reply(&mut plain, timeout).await {
                Ok(r) => r,
                Err(ReadFailure::Timeout) => {
                    // Nothing said: implicit TLS waits for our ClientHello. Ask it.
                    let speaks_tls = match connect(&addrs, timeout).await {
                        Ok(s) => tls_answers(&tls, smtp, s, timeout).await,
                        Err(_) => false,
                    };
                    if speaks_tls {
                        report.fail(
                            "smtp tls",
                            format!("port {port} sent no SMTP greeting within {} but answers a TLS handshake: it expects TLS from the first byte (like 465), not STARTTLS", secs(timeout)),
                            format!("set smtp.security: tls for port {port} (or use port 587 with smtp.security: starttls)"),
                        );
                    } else {
                        report.fail(
                            "smtp tls",
                            format!("port {port} accepts connections but never says anything (no SMTP greeting and no TLS within {})", secs(timeout)),
                            "this is not an SMTP server, or a firewall or antivirus swallows the connection; check smtp.host and smtp.port, or try smtp.port: 465 with smtp.security: tls",
                        );
                    }
                    return false;
                }
                Err(ReadFailure::Tls) => {
                    report.fail(
                        "smtp tls",
                        format!("port {port} sent TLS bytes where an SMTP greeting was expected: it expects TLS from the first byte (like 465)"),
                        format!("set smtp.security: tls for port {port} (or use port 587 with smtp.security: starttls)"),
                    );
                    return false;
                }
                Err(ReadFailure::Other(e)) => {
                    report.fail(
                        "smtp tls",
                        format!("reading the greeting: {e}"),
                        "check smtp.host and smtp.port",
                    );
                    return false;
                }
            };
            if greeting.code != 220 {
                report.fail(
                    "smtp tls",
                    format!("the server greeted with {}", greeting.text()),
                    "the server does not take mail now; check smtp.host, or try again later",
                );
                return false;
            }
            let before = match ehlo(&mut plain, timeout).await {
                Ok(r) => r,
                Err(e) => {
                    report.fail("smtp ehlo", e, "check smtp.host and smtp.port");
                    return false;
                }
            };
            if !before.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                report.fail(
                    "smtp ehlo",
                    format!("port {port} does not offer STARTTLS (it offers: {})", before.join(", ")),
                    "snapmail never logs in without TLS: use port 465 with smtp.security: tls, or a server that offers STARTTLS",
                );
                return false;
            }
            if let Err(e) = command(&mut plain, "STARTTLS", 220, timeout).await {
                report.fail(
                    "smtp tls",
                    format!("STARTTLS refused: {e}"),
                    "check smtp.host and smtp.port",
                );
                return false;
            }
            let tcp = plain.into_inner();
            let session = match handshake(&tls, smtp, tcp, timeout).await {
                Ok(s) => s,
                Err(e) => {
                    let (fact, fix) = explain_tls(smtp, &e);
                    report.fail("smtp tls", fact, fix);
                    return false;
                }
            };
            let version = tls_version(&session);
            report.ok(
                "smtp tls",
                format!(
                    "port {port} greets in plain text and upgrades with STARTTLS ({version}, certificate trusted for {}) in {} ms",
                    smtp.host,
                    t0.elapsed().as_millis()
                ),
            );
            let mut secure = BufReader::new(session);
            finish_ehlo(smtp, &mut secure, timeout, Some(before), report).await
        }
        Security::Tls => {
            match handshake(&tls, smtp, stream, timeout).await {
                Ok(session) => {
                    let version = tls_version(&session);
                    let mut secure = BufReader::new(session);
                    match read_reply(&mut secure, timeout).await {
                        Ok(r) if r.code == 220 => {}
                        Ok(r) => {
                            report.fail(
                                "smtp tls",
                                format!("the server greeted with {}", r.text()),
                                "the server does not take mail now; check smtp.host, or try again later",
                            );
                            return false;
                        }
                        Err(_) => {
                            report.fail(
                                "smtp tls",
                                format!("TLS came up on port {port} but no SMTP greeting followed within {}", secs(timeout)),
                                "this is not an SMTP server; check smtp.host and smtp.port",
                            );
                            return false;
                        }
                    }
                    report.ok(
                        "smtp tls",
                        format!(
                            "port {port} speaks TLS from the first byte ({version}, certificate trusted for {}) in {} ms",
                            smtp.host,
                            t0.elapsed().as_millis()
                        ),
                    );
                    finish_ehlo(smtp, &mut secure, timeout, None, report).await
                }
                Err(e) => {
                    if let HandshakeFailure::Certificate(_) = e {
                        let (fact, fix) = explain_tls(smtp, &e);
                        report.fail("smtp tls", fact, fix);
                        return false;
                    }
                    // Did the port say something in plain text instead?
                    let banner = match connect(&addrs, timeout).await {
                        Ok(s) => read_reply(&mut BufReader::new(s), timeout).await.ok(),
                        Err(_) => None,
                    };
                    match banner {
                        Some(r) => report.fail(
                            "smtp tls",
                            format!("port {port} answered the TLS handshake with a plain-text greeting ({}): it is a STARTTLS port (like 587)", r.text()),
                            format!("set smtp.security: starttls for port {port} (or use port 465 with smtp.security: tls)"),
                        ),
                        None if matches!(e, HandshakeFailure::Timeout) => report.fail(
                            "smtp tls",
                            format!("port {port} accepts connections but never answers (no TLS handshake and no SMTP greeting within {})", secs(timeout)),
                            "this is not an SMTP server, or a firewall or antivirus swallows the connection; check smtp.host and smtp.port",
                        ),
                        None => {
                            let (fact, fix) = explain_tls(smtp, &e);
                            report.fail("smtp tls", fact, fix);
                        }
                    }
                    false
                }
            }
        }
    }
}

async fn finish_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    smtp: &SmtpConfig,
    io: &mut BufReader<S>,
    timeout: Duration,
    before: Option<Vec<String>>,
    report: &mut Report,
) -> bool {
    let after = match ehlo(io, timeout).await {
        Ok(r) => r,
        Err(e) => {
            report.fail("smtp ehlo", e, "check smtp.host and smtp.port");
            return false;
        }
    };
    let _ = command(io, "QUIT", 221, timeout).await;
    let mechanisms: Vec<String> = after
        .iter()
        .filter_map(|l| {
            let u = l.to_ascii_uppercase();
            u.strip_prefix("AUTH ")
                .or_else(|| u.strip_prefix("AUTH="))
                .map(str::to_owned)
        })
        .flat_map(|m| m.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let size = after
        .iter()
        .find_map(|l| l.strip_prefix("SIZE ").map(str::to_owned));
    let mut fact = String::new();
    if before.is_some() {
        fact.push_str("STARTTLS offered; ");
    }
    fact.push_str(&format!(
        "after TLS: AUTH {}",
        if mechanisms.is_empty() {
            "(none)".to_owned()
        } else {
            mechanisms.join(" ")
        }
    ));
    if let Some(size) = size {
        fact.push_str(&format!(", SIZE {size}"));
    }
    let needed: &[&str] = match smtp.auth {
        AuthMethod::Password => &["PLAIN", "LOGIN"],
        AuthMethod::Oauth2 => &["XOAUTH2"],
    };
    if mechanisms.iter().any(|m| needed.contains(&m.as_str())) {
        report.ok("smtp ehlo", fact);
        true
    } else {
        let fix = match smtp.auth {
            AuthMethod::Password => {
                "the server takes no password login; use smtp.auth: oauth2 if it offers XOAUTH2"
            }
            AuthMethod::Oauth2 => {
                "the server does not offer XOAUTH2; use smtp.auth: password with an app password"
            }
        };
        report.fail("smtp ehlo", fact, fix);
        false
    }
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

enum ReadFailure {
    Timeout,
    /// The first byte looked like a TLS record, not text.
    Tls,
    Other(String),
}

/// One (possibly multi-line) SMTP reply.
async fn read_reply<S: AsyncRead + Unpin>(
    io: &mut BufReader<S>,
    timeout: Duration,
) -> Result<Reply, ReadFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let mut buf = Vec::new();
        let read = tokio::time::timeout_at(deadline, async {
            let first = io.fill_buf().await?;
            if lines.is_empty() && first.first().is_some_and(|b| (0x14..=0x17).contains(b)) {
                return Ok(None);
            }
            io.read_until(b'\n', &mut buf).await.map(Some)
        })
        .await;
        let n = match read {
            Err(_) => return Err(ReadFailure::Timeout),
            Ok(Err(e)) => return Err(ReadFailure::Other(e.to_string())),
            Ok(Ok(None)) => return Err(ReadFailure::Tls),
            Ok(Ok(Some(n))) => n,
        };
        if n == 0 {
            return Err(ReadFailure::Other(
                "the server closed the connection".into(),
            ));
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(ReadFailure::Other(format!(
                "not an SMTP reply: {:?}",
                line.chars().take(60).collect::<String>()
            )));
        };
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if last {
            return Ok(Reply { code, lines });
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    cmd: &str,
    expect: u16,
    timeout: Duration,
) -> Result<Reply, String> {
    io.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    io.get_mut().flush().await.map_err(|e| e.to_string())?;
    match read_reply(io, timeout).await {
        Ok(r) if r.code == expect => Ok(r),
        Ok(r) => Err(format!("{cmd} answered {}", r.text())),
        Err(ReadFailure::Timeout) => Err(format!("no answer to {cmd} within {}", secs(timeout))),
        Err(ReadFailure::Tls) => Err(format!("{cmd} answered with binary data")),
        Err(ReadFailure::Other(e)) => Err(e),
    }
}

/// The EHLO keywords (without the first, greeting line).
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let r = command(io, "EHLO snapmail-doctor", 250, timeout).await?;
    Ok(r.lines.into_iter().skip(1).collect())
}

type Connector = tokio_rustls::TlsConnector;

/// Web PKI roots plus `smtp.ca_file`, like the transport.
async fn tls_connector(smtp: &SmtpConfig) -> Result<Connector, String> {
    let ca_file = smtp.ca_file.clone();
    let config = tokio::task::spawn_blocking(move || {
        snapmail::tls::client_config(ca_file.as_deref(), "smtp.ca_file")
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(Connector::from(Arc::new(config)))
}

enum HandshakeFailure {
    Timeout,
    Certificate(rustls::CertificateError),
    Other(String),
}

async fn handshake(
    tls: &Connector,
    smtp: &SmtpConfig,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeFailure> {
    let name = rustls::pki_types::ServerName::try_from(smtp.host.clone()).map_err(|e| {
        HandshakeFailure::Other(format!(
            "smtp.host {:?} is not a valid TLS name: {e}",
            smtp.host
        ))
    })?;
    match tokio::time::timeout(timeout, tls.connect(name, tcp)).await {
        Err(_) => Err(HandshakeFailure::Timeout),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let inner = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            Err(match inner {
                Some(rustls::Error::InvalidCertificate(c)) => HandshakeFailure::Certificate(c),
                Some(other) => HandshakeFailure::Other(other.to_string()),
                None => HandshakeFailure::Other(e.to_string()),
            })
        }
    }
}

/// Whether the port answers a TLS ClientHello at all (any certificate will do).
async fn tls_answers(
    tls: &Connector,
    smtp: &SmtpConfig,
    tcp: TcpStream,
    timeout: Duration,
) -> bool {
    matches!(
        handshake(tls, smtp, tcp, timeout).await,
        Ok(_) | Err(HandshakeFailure::Certificate(_))
    )
}

fn tls_version(s: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    s.get_ref()
        .1
        .protocol_version()
        .and_then(|v| v.as_str())
        .map(|v| v.replace('_', ".").replace("TLSv1.", "TLS 1."))
        .unwrap_or_else(|| "TLS".into())
}

fn explain_tls(smtp: &SmtpConfig, e: &HandshakeFailure) -> (String, String) {
    use rustls::CertificateError as C;
    let gmail = is_gmail(&smtp.host);
    let intercept = "smtp.gmail.com's certificate is always trusted, so something between you and Google intercepts TLS (an antivirus \"mail shield\" or a proxy): turn it off for snapmail";
    match e {
        HandshakeFailure::Certificate(C::UnknownIssuer) => (
            format!("the certificate of {} is signed by a CA snapmail does not trust", smtp.host),
            if gmail {
                intercept.into()
            } else if smtp.ca_file.is_some() {
                "smtp.ca_file does not hold the CA that signed this server's certificate; give the right PEM file".into()
            } else {
                "for a private or self-signed relay, set smtp.ca_file to its CA certificate (PEM)".into()
            },
        ),
        HandshakeFailure::Certificate(C::NotValidForName)
        | HandshakeFailure::Certificate(C::NotValidForNameContext { .. }) => (
            format!("the certificate is not valid for the name {:?}", smtp.host),
            "smtp.host must be the name in the server's certificate (smtp.gmail.com, not an IP address or alias)".into(),
        ),
        HandshakeFailure::Certificate(C::Expired)
        | HandshakeFailure::Certificate(C::ExpiredContext { .. })
        | HandshakeFailure::Certificate(C::NotValidYet)
        | HandshakeFailure::Certificate(C::NotValidYetContext { .. }) => (
            format!("the certificate of {} is expired or not yet valid", smtp.host),
            "check this machine's clock and time zone (NTP); otherwise the server's certificate is out of date".into(),
        ),
        HandshakeFailure::Certificate(other) => (
            format!("the certificate of {} was refused: {other:?}", smtp.host),
            if gmail { intercept.into() } else { "give the server's CA in smtp.ca_file (PEM)".into() },
        ),
        HandshakeFailure::Timeout => (
            format!("no TLS handshake within the time limit on port {}", smtp.port.0),
            "465 needs smtp.security: tls, 587 needs smtp.security: starttls".into(),
        ),
        HandshakeFailure::Other(e) => (
            format!("the TLS handshake failed: {e}"),
            "465 needs smtp.security: tls, 587 needs smtp.security: starttls".into(),
        ),
    }
}

fn is_gmail(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h.ends_with("gmail.com") || h.ends_with("googlemail.com") || h.ends_with("google.com")
}

/// "Gmail answered 534 5.7.9 Application-specific password required."
fn failure_fact(f: &Failure) -> String {
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
fn fix_for(f: &Failure) -> String {
    match (f.code, f.enhanced.as_deref()) {
        (Some(534), Some("5.7.9")) => "that is your Google account password; create an app password at https://myaccount.google.com/apppasswords (needs 2-Step Verification) and put it in smtp.password".into(),
        (Some(535), Some("5.7.8")) if f.hint == classify::HINT_BAD_CREDENTIALS => "wrong, revoked or mistyped app password; generate a new one at https://myaccount.google.com/apppasswords and put it in smtp.password (smtp.username must be the full Gmail address)".into(),
        (Some(454), Some("4.7.0")) => "too many login attempts; wait (an hour is usually enough) before trying again, and stop other programs logging in with this account".into(),
        (Some(550), Some("5.4.5")) => "Gmail's daily sending limit is used up (a rolling 24 h window): wait until it clears; raise rate_limit.cooldown so fewer mails go out".into(),
        (Some(552), _) => "the message is larger than Gmail accepts; lower snapshot.max_width / snapshot.max_image_bytes".into(),
        _ => f.hint.to_owned(),
    }
}

// ------------------------------------------------------------------------------------------
// MQTT

async fn mqtt_steps(config: &Config, args: &DoctorArgs, report: &mut Report) {
    let Some(url) = &config.mqtt.url else {
        report.skip(
            "mqtt",
            format!(
                "no mqtt.url: snapmail runs its own broker on {}; point your cameras there, or set mqtt.url",
                config.mqtt.listen
            ),
        );
        return;
    };
    let addr = match BrokerAddress::parse(url) {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                "mqtt",
                format!("mqtt.url: {e}"),
                "use mqtt://host:1883 or mqtts://host:8883",
            );
            return;
        }
    };
    let cfg = &config.mqtt;
    // A client id of its own, so the check does not push a running snapmail off the broker.
    let client_id = format!("{}-doctor-{}", cfg.client_id, std::process::id());
    let mut opts = snapmail::sources::mqtt::client_options(cfg, &addr, client_id);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let t0 = Instant::now();
    let broker = format!("{}:{}", addr.host, addr.port);
    let connected = tokio::time::timeout(args.timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let who = cfg
        .username
        .as_deref()
        .map(|u| format!(" as {u}"))
        .unwrap_or_else(|| " without a login".into());
    match connected {
        Ok(Ok(())) => report.ok(
            "mqtt connect",
            format!(
                "connected to {broker}{who} in {} ms",
                t0.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => {
            let (fact, fix) = explain_mqtt(&e, &broker, url);
            report.fail("mqtt connect", fact, fix);
            return;
        }
        Err(_) => {
            report.fail(
                "mqtt connect",
                format!("no answer from {broker} within {}", secs(args.timeout)),
                "check mqtt.url; a firewall may drop the connection, or the port is not an MQTT broker",
            );
            return;
        }
    }

    let mut decoders = sources::decoders(config);
    let filters: Vec<Vec<String>> = decoders.iter().map(|d| d.topics()).collect();
    let topics: Vec<String> = filters.iter().flatten().cloned().collect();
    let qos = if cfg.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    for t in &topics {
        let _ = client.try_subscribe(t.clone(), qos);
    }
    let mut acked = 0usize;
    let subscribed = tokio::time::timeout(args.timeout, async {
        while acked < topics.len() {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        return Err(
                            "the broker refused the subscription (not allowed by its ACL)"
                                .to_owned(),
                        );
                    }
                    acked += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    })
    .await;
    match subscribed {
        Ok(Ok(())) => report.ok(
            "mqtt subscribe",
            format!("subscribed to {}", topics.join(", ")),
        ),
        Ok(Err(e)) => {
            report.fail(
                "mqtt subscribe",
                format!("{}: {e}", topics.join(", ")),
                "allow mqtt.username to read these topics in the broker's ACL",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "mqtt subscribe",
                format!("no SUBACK within {}", secs(args.timeout)),
                "the broker did not confirm the subscription; check its log",
            );
            return;
        }
    }

    let mut seen = 0usize;
    let mut would_mail = 0usize;
    let deadline = tokio::time::Instant::now() + args.listen;
    loop {
        let polled = tokio::time::timeout_at(deadline, eventloop.poll()).await;
        let p = match polled {
            Err(_) => break,
            Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => p,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                report.fail(
                    "mqtt listen",
                    format!("the connection dropped while listening: {e}"),
                    "check the broker's log (a second client with the same id, or a packet over mqtt.max_packet_bytes)",
                );
                return;
            }
        };
        seen += 1;
        let msg = Message {
            topic: &p.topic,
            payload: &p.payload,
            retained: p.retain,
        };
        let retained = if p.retain { " (retained)" } else { "" };
        for (decoder, f) in decoders.iter_mut().zip(&filters) {
            if !sources::matches_any(&p.topic, f) {
                continue;
            }
            let verdict = match decoder.decode(msg) {
                Decoded::Event(ev) => {
                    would_mail += 1;
                    format!(
                        "{} {}: camera {} → would mail it (cooldown {})",
                        decoder.kind(),
                        ev.summary(),
                        ev.camera,
                        humantime::format_duration(config.cooldown_for(&ev.camera))
                    )
                }
                Decoded::Ignored(why) => format!("{}: ignored: {why}", decoder.kind()),
                Decoded::Malformed(why) => format!("{}: unreadable: {why}", decoder.kind()),
                Decoded::Control(c) => format!("{}: control command {c:?}", decoder.kind()),
            };
            if seen <= 50 {
                report.info("mqtt message", format!("{}{retained}: {verdict}", p.topic));
            }
        }
    }
    let _ = client.try_disconnect();
    if seen == 0 {
        report.warn(
            "mqtt listen",
            format!("no messages on {} in {}", topics.join(", "), humantime::format_duration(args.listen)),
            "trigger an event (walk past a camera) while doctor listens (--listen 60s), or check frigate.topic_prefix; `mosquitto_sub -v -t '#'` shows what the broker carries",
        );
    } else {
        report.ok(
            "mqtt listen",
            format!(
                "{seen} message(s) in {}, {would_mail} of them would be mailed (subject to the cooldown)",
                humantime::format_duration(args.listen)
            ),
        );
    }
}

fn explain_mqtt(e: &ConnectionError, broker: &str, url: &str) -> (String, String) {
    use rumqttc::ConnectReturnCode as C;
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword)
        | ConnectionError::ConnectionRefused(C::NotAuthorized) => (
            format!("{broker} refused the login"),
            "check mqtt.username and mqtt.password (Home Assistant's Mosquitto add-on wants a Home Assistant user or one from its logins list)".into(),
        ),
        ConnectionError::ConnectionRefused(code) => (
            format!("{broker} refused the connection ({code:?})"),
            "check mqtt.client_id and the broker's log".into(),
        ),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            format!("nothing listens on {broker} (connection refused)"),
            format!("check mqtt.url ({url}) and that the broker is running"),
        ),
        ConnectionError::Tls(t) => (
            format!("TLS to {broker} failed: {t}"),
            "mqtts:// needs a broker certificate from a public CA; use mqtt://host:1883 for a plain broker".into(),
        ),
        other => (
            format!("cannot connect to {broker}: {other}"),
            format!("check mqtt.url ({url}); mqtts:// only for a TLS listener"),
        ),
    }
}

// ------------------------------------------------------------------------------------------
// Snapshots

pub(super) fn http_client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    snapmail::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(config.snapshot.timeout.0)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("snapmail/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One camera's latest snapshot, fetched and decoded like a real event's.
pub(super) struct Probe {
    pub url: String,
    pub status: Option<u16>,
    pub bytes: usize,
    pub fetch_ms: u128,
    pub decode_ms: u128,
    pub picture: Result<Thumbnail, String>,
}

pub(super) async fn probe_camera(client: &reqwest::Client, config: &Config, camera: &str) -> Probe {
    let url = format!(
        "{}/api/{}/latest.jpg",
        config.frigate.url.trim_end_matches('/'),
        camera
    );
    let t0 = Instant::now();
    let mut probe = Probe {
        // Shown to the user: without any login the URL may carry.
        url: snapmail::snapshot::fetch::redact_url(&url),
        status: None,
        bytes: 0,
        fetch_ms: 0,
        decode_ms: 0,
        picture: Err(String::new()),
    };
    let body = match client.get(&url).send().await {
        Ok(resp) => {
            probe.status = Some(resp.status().as_u16());
            let ok = resp.status().is_success();
            match resp.bytes().await {
                Ok(b) if ok => Ok(b.to_vec()),
                Ok(b) => Err(format!(
                    "answered {}: {}",
                    probe.status.unwrap_or(0),
                    String::from_utf8_lossy(&b[..b.len().min(120)]).trim()
                )),
                Err(e) => Err(snapmail::snapshot::fetch::error_chain(&e)),
            }
        }
        Err(e) => Err(snapmail::snapshot::fetch::error_chain(&e)),
    };
    probe.fetch_ms = t0.elapsed().as_millis();
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            probe.picture = Err(e);
            return probe;
        }
    };
    probe.bytes = body.len();
    let spec = super::test_email::spec(config);
    let limits = Limits {
        max_pixels: config.snapshot.max_pixels,
        max_bytes: config.snapshot.max_bytes,
    };
    let t1 = Instant::now();
    probe.picture = tokio::task::spawn_blocking(move || {
        snapmail::snapshot::image::thumbnail(&body, &spec, &limits).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    probe.decode_ms = t1.elapsed().as_millis();
    probe
}

async fn snapshot_steps(config: &Config, report: &mut Report) {
    if config.cameras.is_empty() {
        report.skip(
            "snapshots",
            "no cameras under cameras: in the config, so no snapshot was fetched (add cameras.<name>: {} to check one)",
        );
        return;
    }
    let client = match http_client(config) {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                "snapshots",
                format!("cannot set up the HTTP client: {e}"),
                "report this as a bug",
            );
            return;
        }
    };
    for camera in config.cameras.keys() {
        let step = format!("snapshot {camera}");
        let p = probe_camera(&client, config, camera).await;
        match (&p.picture, p.status) {
            (Ok(t), _) => report.ok(
                &step,
                format!(
                    "GET {} → {}, {} bytes, {}×{} {} in {} ms; decoded and resized to {}×{} ({} bytes) in {} ms",
                    p.url,
                    p.status.unwrap_or(0),
                    p.bytes,
                    t.source_width,
                    t.source_height,
                    t.source_format,
                    p.fetch_ms,
                    t.width,
                    t.height,
                    t.jpeg.len(),
                    p.decode_ms
                ),
            ),
            (Err(e), None) => report.fail(
                &step,
                format!("GET {}: {e}", p.url),
                "check frigate.url and that Frigate is reachable from this machine",
            ),
            (Err(e), Some(200..=299)) => report.fail(
                &step,
                format!("GET {} → {} bytes that are not a usable picture: {e}", p.url, p.bytes),
                "check frigate.url points at Frigate's API (port 5000, or 8971 behind its login)",
            ),
            (Err(e), Some(_)) => report.fail(
                &step,
                format!("GET {} {e}", p.url),
                format!("the camera name under cameras: must be Frigate's name for it ({camera:?}); check frigate.url"),
            ),
        }
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
