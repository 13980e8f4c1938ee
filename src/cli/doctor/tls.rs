//! The TLS step on a connection of the doctor's own: greeting, implicit TLS or STARTTLS
//! (matched against how the port really behaves), the certificate, and EHLO — so that a
//! 465/587 mix-up, a certificate problem and a missing AUTH each get their own fix.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapmail::config::{AuthMethod, Security, SmtpConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::args::secs;
use super::report::Report;

pub(super) async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addrs)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {}", secs(timeout))),
    }
}

/// Greeting, TLS (implicit or STARTTLS, matched against the port's behaviour) and EHLO.
/// True when the TLS session came up and the login mechanism is offered.
pub(super) async fn tls_steps(
    smtp: &SmtpConfig,
    tls: &Arc<rustls::ClientConfig>,
    addrs: &[SocketAddr],
    timeout: Duration,
    report: &mut Report,
) -> bool {
    let addrs: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::new(a.ip(), smtp.port.0))
        .collect();
    // The trust the daemon uses (public roots plus smtp.ca_file), resolved by the plan.
    let tls = Connector::from(tls.clone());
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
                    "port {port} greets in plain text and upgrades with STARTTLS ({version}, {}) in {} ms",
                    trust(&session, smtp),
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
                    let trusted = trust(&session, smtp);
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
                            "port {port} speaks TLS from the first byte ({version}, {trusted}) in {} ms",
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

pub(super) async fn finish_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
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

pub(super) struct Reply {
    pub(super) code: u16,
    pub(super) lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

pub(super) enum ReadFailure {
    Timeout,
    /// The first byte looked like a TLS record, not text.
    Tls,
    Other(String),
}

/// One (possibly multi-line) SMTP reply.
pub(super) async fn read_reply<S: AsyncRead + Unpin>(
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

pub(super) async fn command<S: AsyncRead + AsyncWrite + Unpin>(
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
pub(super) async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let r = command(io, "EHLO snapmail-doctor", 250, timeout).await?;
    Ok(r.lines.into_iter().skip(1).collect())
}

pub(super) type Connector = tokio_rustls::TlsConnector;

pub(super) enum HandshakeFailure {
    Timeout,
    Certificate(rustls::CertificateError),
    Other(String),
}

pub(super) async fn handshake(
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
pub(super) async fn tls_answers(
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

pub(super) fn tls_version(s: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    s.get_ref()
        .1
        .protocol_version()
        .and_then(|v| v.as_str())
        .map(|v| v.replace('_', ".").replace("TLSv1.", "TLS 1."))
        .unwrap_or_else(|| "TLS".into())
}

/// How the server's certificate came to be trusted: through a CA, or because it is exactly
/// the certificate in `smtp.ca_file` (a self-signed server).
fn trust(s: &tokio_rustls::client::TlsStream<TcpStream>, smtp: &SmtpConfig) -> String {
    let presented = s.get_ref().1.peer_certificates().and_then(|c| c.first());
    let pinned = smtp
        .ca_file
        .as_deref()
        .and_then(|p| snapmail::tls::ca_file_certificates(p, "smtp.ca_file").ok())
        .unwrap_or_default();
    let is_pinned = presented.is_some_and(|cert| pinned.iter().any(|c| c == cert));
    if is_pinned {
        format!(
            "the server's own certificate from smtp.ca_file, valid for {}",
            smtp.host
        )
    } else {
        format!("certificate trusted for {}", smtp.host)
    }
}

pub(super) fn explain_tls(smtp: &SmtpConfig, e: &HandshakeFailure) -> (String, String) {
    use rustls::CertificateError as C;
    let gmail = snapmail::config::is_gmail(&smtp.host);
    let intercept = "smtp.gmail.com's certificate is always trusted, so something between you and Google intercepts TLS (an antivirus \"mail shield\" or a proxy): turn it off for snapmail";
    match e {
        HandshakeFailure::Certificate(C::UnknownIssuer) => (
            format!("the certificate of {} is signed by a CA snapmail does not trust", smtp.host),
            if gmail {
                intercept.into()
            } else if smtp.ca_file.is_some() {
                "smtp.ca_file holds neither this server's own certificate nor the CA that signed it; give the right PEM file".into()
            } else {
                "for a relay with a private CA or a self-signed certificate, set smtp.ca_file to the CA's or the server's own certificate (PEM)".into()
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
        // A self-signed certificate made with `openssl req -x509` says it is a CA.
        HandshakeFailure::Certificate(C::Other(o)) if format!("{o:?}").contains("CaUsedAsEndEntity") => (
            format!("{} presents a self-signed certificate (a certificate that is its own CA)", smtp.host),
            if gmail {
                intercept.into()
            } else if smtp.ca_file.is_some() {
                "smtp.ca_file does not hold this server's certificate; put the server's own certificate (PEM) there".into()
            } else {
                "for a relay with a self-signed certificate, set smtp.ca_file to that certificate (PEM) to trust exactly it".into()
            },
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
