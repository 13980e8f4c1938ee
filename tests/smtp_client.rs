//! The SMTP client against the Gmail-like TLS test server and against a scripted server:
//! round trips per mail (counted at the client's socket: each wait for the server after
//! sending), sessions opened ahead of a mail and taken over by the send, Gmail's refusals at
//! each stage, kept sessions that died, keep-alives off the send path, and the lock-step
//! fallback for servers without PIPELINING and CHUNKING.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::smtp::{self, Fault, SmtpServer};
use crate::support::wait::wait_until;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lettre::Message;
use snapmail::config::{HumanDuration, Port, Security, SmtpConfig, StringList};
use snapmail::mail::classify::{
    HINT_APP_PASSWORD_REQUIRED, HINT_BAD_CREDENTIALS, HINT_QUOTA, HINT_STARTTLS_FIRST,
    HINT_TOO_LARGE, HINT_TOO_MANY_LOGINS,
};
use snapmail::mail::{Class, Failure, IdlePolicy, Mailer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(20);

fn config(port: u16, security: Security, ca_file: &std::path::Path, password: &str) -> SmtpConfig {
    SmtpConfig {
        host: "localhost".into(),
        port: Port(port),
        security_setting: Some(security),
        username: "cam@example.com".into(),
        password: Some(snapmail::secret::Secret::new(password)),
        to: StringList(vec!["me@example.com".into()]),
        ca_file: Some(ca_file.to_owned()),
        timeout: HumanDuration::secs(20),
        ..SmtpConfig::default()
    }
}

fn starttls(s: &SmtpServer) -> Mailer {
    Mailer::new(&config(
        s.starttls_port,
        Security::Starttls,
        &s.ca_file,
        "abcd efgh ijkl mnop",
    ))
    .unwrap()
}

fn message(n: usize) -> Message {
    Message::builder()
        .from("cam@example.com".parse().unwrap())
        .to("me@example.com".parse().unwrap())
        .subject(format!("mail {n}"))
        .body(format!("body {n}\r\n.a line that starts with a dot\r\n"))
        .unwrap()
}

async fn send(m: &Mailer, msg: &Message) -> Result<snapmail::mail::Accepted, Failure> {
    m.send_raw(msg.envelope(), &msg.formatted()).await
}

/// Round trips the send of `msg` cost.
async fn trips(m: &Mailer, msg: &Message) -> u64 {
    let before = m.round_trips();
    send(m, msg).await.unwrap();
    m.round_trips() - before
}

#[tokio::test]
async fn starttls_costs_seven_round_trips_cold_and_one_warm() {
    let s = smtp::start().await;
    let m = starttls(&s);
    let first = message(1);
    // TCP, greeting, EHLO, STARTTLS, TLS 1.3, EHLO, then AUTH PLAIN + MAIL + RCPT + BDAT.
    assert_eq!(trips(&m, &first).await, 7, "{}", s.transcript());
    assert_eq!(trips(&m, &message(2)).await, 1, "{}", s.transcript());
    assert_eq!(trips(&m, &message(3)).await, 1, "{}", s.transcript());
    let mails = s.messages();
    assert_eq!(mails.len(), 3);
    assert_eq!(mails[0].data, first.formatted(), "sent byte for byte");
    assert_eq!((s.connections(), s.auth_attempts()), (1, 1));
    let t = s.transcript();
    assert!(t.contains("C: BDAT"), "{t}");
    assert!(!t.contains("pipelined after STARTTLS"), "{t}");
    assert!(!t.contains("C: NOOP"), "no check before a warm send: {t}");
}

#[tokio::test]
async fn implicit_tls_costs_five_round_trips_cold_and_one_warm() {
    let s = smtp::start().await;
    let m = Mailer::new(&config(
        s.tls_port,
        Security::Tls,
        &s.ca_file,
        "abcdefghijklmnop",
    ))
    .unwrap();
    // TCP, TLS 1.3, greeting, EHLO, then AUTH PLAIN + MAIL + RCPT + BDAT.
    assert_eq!(trips(&m, &message(1)).await, 5, "{}", s.transcript());
    assert_eq!(trips(&m, &message(2)).await, 1, "{}", s.transcript());
    assert_eq!(s.messages()[1].port, s.tls_port);
}

#[tokio::test]
async fn a_session_opened_ahead_logs_in_with_the_mail_and_costs_it_one_round_trip() {
    let s = smtp::start().await;
    let m = starttls(&s);
    m.warm();
    m.warm();
    wait_until("the session opened ahead", T, || m.round_trips() == 6).await;
    assert_eq!(s.connections(), 1, "one opening for two calls");
    assert_eq!(s.auth_attempts(), 0, "no login before there is a mail");
    m.warm();
    assert_eq!(trips(&m, &message(1)).await, 1, "{}", s.transcript());
    assert_eq!((s.connections(), s.auth_attempts()), (1, 1));
}

#[tokio::test]
async fn a_send_takes_over_the_session_being_opened() {
    let s = smtp::start().await;
    let m = starttls(&s);
    m.warm();
    // The send starts while the opening is under way and waits for it.
    send(&m, &message(1)).await.unwrap();
    assert_eq!(m.round_trips(), 7, "{}", s.transcript());
    assert_eq!(s.connections(), 1, "{}", s.transcript());
}

#[tokio::test]
async fn a_failed_opening_stops_opening_ahead_until_a_send_succeeds() {
    let s = smtp::start().await;
    let m = starttls(&s);
    s.inject(
        Fault::Greeting("421 4.7.0 Try again later, closing connection.".into()),
        1,
    );
    m.warm();
    wait_until("the opening to be given up", T, || {
        let st = m.status();
        st.opening == 0 && !st.opening_ahead
    })
    .await;
    for _ in 0..5 {
        m.warm();
    }
    assert_eq!(m.status().opening, 0, "no new opening after a failure");
    assert_eq!(s.connections(), 1);
    send(&m, &message(1)).await.unwrap();
    assert_eq!(s.connections(), 2);
    // Healthy again: but a session is idle, so nothing more is opened.
    assert!(m.status().opening_ahead);
    m.warm();
    assert_eq!(m.status().opening, 0);
    assert_eq!(trips(&m, &message(2)).await, 1);
    assert_eq!(s.connections(), 2);
}

#[tokio::test]
async fn the_openings_failure_is_the_failure_of_the_send_that_took_it_over() {
    let s = smtp::start().await;
    let m = starttls(&s);
    s.inject(
        Fault::Greeting("421 4.7.0 Try again later, closing connection.".into()),
        1,
    );
    m.warm();
    let f = send(&m, &message(1)).await.unwrap_err();
    assert_eq!((f.code, f.class), (Some(421), Class::Transient), "{f}");
    assert_eq!(s.connections(), 1, "the send did not open a second session");
}

async fn refused_login(password: &str) -> Failure {
    let s = smtp::start().await;
    let m = Mailer::new(&config(
        s.starttls_port,
        Security::Starttls,
        &s.ca_file,
        password,
    ))
    .unwrap();
    let f = send(&m, &message(1)).await.unwrap_err();
    assert!(s.messages().is_empty());
    f
}

#[tokio::test]
async fn gmail_refusals_of_the_login_keep_their_meaning() {
    let f = refused_login("abcd efgh ijkl mnoq").await;
    assert_eq!(f.class, Class::Credentials, "{f}");
    assert_eq!(
        (f.code, f.enhanced.as_deref(), f.hint),
        (Some(535), Some("5.7.8"), HINT_BAD_CREDENTIALS)
    );
    assert!(f
        .detail
        .starts_with("5.7.8 Username and Password not accepted."));
    let f = refused_login("correct-horse-account").await;
    assert_eq!(
        (f.code, f.enhanced.as_deref(), f.hint),
        (Some(534), Some("5.7.9"), HINT_APP_PASSWORD_REQUIRED)
    );
}

async fn refused_at(fault: Fault) -> (Failure, SmtpServer, Mailer) {
    let s = smtp::start().await;
    let m = starttls(&s);
    s.inject(fault, 1);
    let f = send(&m, &message(1)).await.unwrap_err();
    (f, s, m)
}

#[tokio::test]
async fn gmail_refusals_at_auth_keep_their_meaning() {
    let (f, _s, _m) = refused_at(Fault::Auth(
        "454 4.7.0 Too many login attempts, please try again later.".into(),
    ))
    .await;
    assert_eq!((f.class, f.hint), (Class::Transient, HINT_TOO_MANY_LOGINS));
    let (f, _s, _m) = refused_at(Fault::Auth(
        "530-5.7.0 Must issue a STARTTLS command first. For more information, go to\n\
         530 5.7.0  https://support.google.com/a/answer/3221692"
            .into(),
    ))
    .await;
    assert_eq!((f.class, f.hint), (Class::Permanent, HINT_STARTTLS_FIRST));
}

#[tokio::test]
async fn gmail_refusals_of_the_message_keep_their_meaning_and_the_session() {
    let (f, s, m) = refused_at(Fault::DataEnd(
        "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n\
         550-5.4.5 sending limits go to\n550 5.4.5  https://support.google.com/a/answer/166852"
            .into(),
    ))
    .await;
    assert_eq!((f.class, f.hint), (Class::Quota, HINT_QUOTA), "{f}");
    assert_eq!((f.code, f.enhanced.as_deref()), (Some(550), Some("5.4.5")));

    s.inject(
        Fault::DataEnd(
            "552-5.3.4 Your message exceeded Google's message size limits.\n\
             552 5.3.4  https://support.google.com/mail/?p=MaxSizeError"
                .into(),
        ),
        1,
    );
    let f = send(&m, &message(2)).await.unwrap_err();
    assert_eq!((f.class, f.hint), (Class::TooLarge, HINT_TOO_LARGE), "{f}");

    s.inject(
        Fault::DataEnd("451 4.3.0 Mail server temporarily rejected message.".into()),
        1,
    );
    assert_eq!(
        send(&m, &message(3)).await.unwrap_err().class,
        Class::Transient
    );
    // The refusals ended transactions, not the session: the next mail goes on it, after
    // an RSET in the same flight.
    assert_eq!(trips(&m, &message(4)).await, 1, "{}", s.transcript());
    assert_eq!(s.connections(), 1);
    assert_eq!(s.messages().len(), 1);
    assert!(s.transcript().contains("C: RSET"), "{}", s.transcript());
}

#[tokio::test]
async fn a_message_over_the_announced_size_is_refused_before_it_is_sent() {
    let s = smtp::start().await;
    let m = starttls(&s);
    send(&m, &message(1)).await.unwrap();
    let huge = Message::builder()
        .from("cam@example.com".parse().unwrap())
        .to("me@example.com".parse().unwrap())
        .subject("huge")
        .body("x".repeat(1000) + "\r\n")
        .unwrap();
    let mut bytes = huge.formatted();
    let line = [b"y".repeat(998), b"\r\n".to_vec()].concat();
    while bytes.len() <= smtp::MAX_MESSAGE_SIZE {
        bytes.extend_from_slice(&line);
    }
    let before = m.round_trips();
    let f = m.send_raw(huge.envelope(), &bytes).await.unwrap_err();
    assert_eq!((f.code, f.class), (Some(552), Class::TooLarge), "{f}");
    assert_eq!(
        m.round_trips() - before,
        1,
        "MAIL FROM alone, SIZE= refused"
    );
    let t = s.transcript();
    assert!(t.contains(&format!("SIZE={}", bytes.len())), "{t}");
    assert_eq!(
        t.matches("C: [data:").count(),
        1,
        "only the first message was sent: {t}"
    );
    // The session carries on.
    assert_eq!(trips(&m, &message(2)).await, 1);
}

#[tokio::test]
async fn a_kept_session_the_server_closed_is_replaced_without_a_failure() {
    let s = smtp::start().await;
    let m = starttls(&s);
    send(&m, &message(1)).await.unwrap();
    s.set_down(true);
    s.set_down(false);
    send(&m, &message(2)).await.unwrap();
    assert_eq!(s.connections(), 2);
    assert_eq!(s.messages().len(), 2);
}

#[tokio::test]
async fn kept_sessions_get_keep_alives_off_the_send_path_then_close() {
    let s = smtp::start().await;
    // Long enough between keep-alives that none runs during the send below.
    let idle = IdlePolicy {
        keepalive: Duration::from_secs(1),
        keep_for: Duration::from_secs(3),
    };
    let m = Mailer::with_idle_policy(
        &config(
            s.starttls_port,
            Security::Starttls,
            &s.ca_file,
            "abcdefghijklmnop",
        ),
        idle,
    )
    .unwrap();
    send(&m, &message(1)).await.unwrap();
    let noops = || s.transcript().matches("C: NOOP").count();
    wait_until("a keep-alive, answered", T, || {
        noops() >= 1 && m.round_trips() == 7 + noops() as u64
    })
    .await;
    let (before, seen) = (m.round_trips(), noops());
    send(&m, &message(2)).await.unwrap();
    assert_eq!(noops(), seen, "a keep-alive ran during the send");
    assert_eq!(m.round_trips() - before, 1, "{}", s.transcript());
    assert_eq!(s.connections(), 1);
    wait_until("the idle session to close", T, || {
        s.transcript().contains("C: QUIT")
    })
    .await;
    assert!(noops() >= 2, "{}", s.transcript());
    send(&m, &message(3)).await.unwrap();
    assert_eq!(
        s.connections(),
        2,
        "a new session after the idle one closed"
    );
}

// ---------------------------------------------------------------------------------------
// A scripted server: implicit TLS, chosen extensions, and faults the Gmail-like server
// does not have.

struct Scripted {
    port: u16,
    ca_file: PathBuf,
    state: Arc<Mutex<Script>>,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Script {
    /// Extensions after the greeting line of EHLO.
    extensions: Vec<&'static str>,
    /// Close the connection instead of answering its `n`-th MAIL FROM (after `reply`).
    die_at_mail: Option<(usize, Option<&'static str>)>,
    /// Close a connection that sends nothing for this long, as Gmail does.
    idle_close: Option<Duration>,
    idle_closes: usize,
    noops: usize,
    connections: usize,
    messages: Vec<Vec<u8>>,
    /// Commands that arrived while an earlier one was unanswered, without PIPELINING.
    pipelined: Vec<String>,
    auth: Vec<String>,
}

impl Scripted {
    async fn start(extensions: &[&'static str]) -> Scripted {
        crate::support::install_crypto();
        let (ca_pem, server_config) = certificates();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Script {
            extensions: extensions.to_vec(),
            ..Script::default()
        }));
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve(BufReader::new(tls), state).await;
                    }
                });
            }
        });
        Scripted {
            port,
            ca_file,
            state,
            _dir: dir,
        }
    }

    fn mailer(&self) -> Mailer {
        self.mailer_keeping(IdlePolicy::default())
    }

    fn mailer_keeping(&self, idle: IdlePolicy) -> Mailer {
        let smtp = config(self.port, Security::Tls, &self.ca_file, "abcdefghijklmnop");
        Mailer::with_idle_policy(&smtp, idle).unwrap()
    }

    fn get<R>(&self, f: impl FnOnce(&Script) -> R) -> R {
        f(&self.state.lock().unwrap())
    }
}

fn certificates() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

async fn serve<S>(mut io: BufReader<S>, state: Arc<Mutex<Script>>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (extensions, die_at_mail, idle_close) = {
        let st = state.lock().unwrap();
        (st.extensions.clone(), st.die_at_mail, st.idle_close)
    };
    let pipelining = extensions.contains(&"PIPELINING");
    let mut mails = 0;
    io.get_mut().write_all(b"220 scripted ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        let read = match idle_close {
            Some(idle) => match tokio::time::timeout(idle, io.read_line(&mut line)).await {
                Ok(read) => read?,
                Err(_) => {
                    state.lock().unwrap().idle_closes += 1;
                    io.get_mut()
                        .write_all(b"451 4.4.2 Timeout - closing connection.\r\n")
                        .await?;
                    return io.get_mut().shutdown().await;
                }
            },
            None => io.read_line(&mut line).await?,
        };
        if read == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        if !pipelining && !io.buffer().is_empty() {
            state.lock().unwrap().pipelined.push(command.clone());
        }
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["scripted".to_string()];
                lines.extend(extensions.iter().map(|e| e.to_string()));
                let last = lines.len() - 1;
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                    .collect()
            }
            "AUTH" if command.to_ascii_uppercase().starts_with("AUTH LOGIN") => {
                io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                let user = read_b64(&mut io).await?;
                io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                let pass = read_b64(&mut io).await?;
                state
                    .lock()
                    .unwrap()
                    .auth
                    .push(format!("LOGIN {user} {pass}"));
                if (user.as_str(), pass.as_str()) == ("cam@example.com", "abcdefghijklmnop") {
                    "235 2.7.0 Accepted\r\n".into()
                } else {
                    "535 5.7.8 no\r\n".into()
                }
            }
            "AUTH" => {
                state.lock().unwrap().auth.push("PLAIN".into());
                "235 2.7.0 Accepted\r\n".into()
            }
            "MAIL" => {
                mails += 1;
                if let Some((n, last_words)) = die_at_mail {
                    if n == mails {
                        if let Some(words) = last_words {
                            io.get_mut().write_all(words.as_bytes()).await?;
                        }
                        return Ok(());
                    }
                }
                "250 2.1.0 OK\r\n".into()
            }
            "NOOP" => {
                state.lock().unwrap().noops += 1;
                "250 2.0.0 OK\r\n".into()
            }
            "RCPT" | "RSET" => "250 2.1.5 OK\r\n".into(),
            "DATA" => {
                io.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut message = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    message.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                state.lock().unwrap().messages.push(message);
                "250 2.0.0 OK\r\n".into()
            }
            "BDAT" => {
                let n: usize = command.split_whitespace().nth(1).unwrap().parse().unwrap();
                let mut message = vec![0; n];
                io.read_exact(&mut message).await?;
                state.lock().unwrap().messages.push(message);
                "250 2.0.0 OK\r\n".into()
            }
            "QUIT" => {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.1 Unrecognized command\r\n".into(),
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
    }
}

async fn read_b64<S: tokio::io::AsyncRead + Unpin>(
    io: &mut BufReader<S>,
) -> std::io::Result<String> {
    let mut l = String::new();
    io.read_line(&mut l).await?;
    Ok(String::from_utf8_lossy(&B64.decode(l.trim()).unwrap_or_default()).into_owned())
}

#[tokio::test]
async fn without_pipelining_and_chunking_every_command_waits_and_data_is_dot_stuffed() {
    let s = Scripted::start(&["SIZE 1000000", "AUTH LOGIN"]).await;
    let m = s.mailer();
    let first = message(1);
    // TCP, TLS, greeting, EHLO, AUTH LOGIN (three steps), MAIL, RCPT, DATA, the message.
    assert_eq!(trips(&m, &first).await, 11);
    // MAIL, RCPT, DATA, the message.
    assert_eq!(trips(&m, &message(2)).await, 4);
    s.get(|st| {
        assert!(st.pipelined.is_empty(), "{:?}", st.pipelined);
        assert_eq!(st.auth, ["LOGIN cam@example.com abcdefghijklmnop"]);
        assert_eq!(st.messages.len(), 2);
        assert_eq!(st.messages[0], first.formatted(), "dot-stuffing undone");
        assert_eq!(st.connections, 1);
    });
}

#[tokio::test]
async fn pipelining_without_chunking_waits_for_354_only() {
    let s = Scripted::start(&["PIPELINING", "AUTH PLAIN LOGIN"]).await;
    let m = s.mailer();
    // TCP, TLS, greeting, EHLO; AUTH PLAIN + MAIL + RCPT + DATA; the message.
    assert_eq!(trips(&m, &message(1)).await, 6);
    let second = message(2);
    assert_eq!(trips(&m, &second).await, 2);
    s.get(|st| {
        assert_eq!(st.messages[1], second.formatted());
        assert_eq!(st.auth, ["PLAIN"]);
    });
}

async fn dies_at_second_mail(last_words: Option<&'static str>) {
    let s = Scripted::start(&["PIPELINING", "CHUNKING", "AUTH PLAIN"]).await;
    s.state.lock().unwrap().die_at_mail = Some((2, last_words));
    let m = s.mailer();
    send(&m, &message(1)).await.unwrap();
    // The kept session looks alive, but the server drops it at the next mail: the mail
    // goes out on a new session, within the same send.
    let second = message(2);
    send(&m, &second).await.unwrap();
    s.get(|st| {
        assert_eq!(st.connections, 2);
        assert_eq!(st.messages.len(), 2);
        assert_eq!(st.messages[1], second.formatted());
    });
}

#[tokio::test]
async fn a_kept_session_that_dies_at_the_next_mail_is_replaced_within_the_send() {
    dies_at_second_mail(None).await;
}

#[tokio::test]
async fn a_kept_session_answered_with_421_is_replaced_within_the_send() {
    dies_at_second_mail(Some("421 4.4.2 Timeout - closing connection.\r\n")).await;
}

#[tokio::test]
async fn a_server_closing_idle_sessions_shortens_the_keep_alive_and_gets_one_opened_in_place() {
    let s = Scripted::start(&["PIPELINING", "CHUNKING", "AUTH PLAIN"]).await;
    s.state.lock().unwrap().idle_close = Some(Duration::from_millis(2500));
    let m = s.mailer_keeping(IdlePolicy {
        keepalive: Duration::from_secs(60),
        keep_for: Duration::from_secs(60),
    });
    send(&m, &message(1)).await.unwrap();
    // The server closes the kept session after 2.5 s without a command; the pool sees it,
    // halves that for its keep-alive, and opens a session in its place.
    wait_until("the idle limit learnt", T, || {
        m.status().keepalive < Duration::from_secs(60)
    })
    .await;
    let keepalive = m.status().keepalive;
    assert!(
        keepalive > Duration::from_millis(1000) && keepalive <= Duration::from_millis(1250),
        "{keepalive:?}"
    );
    wait_until("a session opened in place", T, || {
        s.get(|st| st.connections) == 2 && m.status().idle == 1
    })
    .await;
    // Kept alive past the server's limit by the NOOPs.
    wait_until("three keep-alives on it", T, || s.get(|st| st.noops) >= 3).await;
    assert_eq!(s.get(|st| st.idle_closes), 1);
    send(&m, &message(2)).await.unwrap();
    s.get(|st| assert_eq!((st.connections, st.messages.len()), (2, 2)));
}

#[tokio::test]
async fn a_fresh_session_that_dies_is_a_failure_not_a_resend() {
    let s = Scripted::start(&["PIPELINING", "CHUNKING", "AUTH PLAIN"]).await;
    s.state.lock().unwrap().die_at_mail = Some((1, None));
    let m = s.mailer();
    let f = send(&m, &message(1)).await.unwrap_err();
    assert_eq!(f.class, Class::Transient, "{f}");
    s.get(|st| assert_eq!((st.connections, st.messages.len()), (1, 0)));
}

// ---------------------------------------------------------------------------------------
// The daemon: sessions are opened while the picture is fetched.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_opens_a_session_while_the_picture_is_still_being_fetched() {
    use crate::support::{http, images, mosquitto, rig};
    const FETCH: Duration = Duration::from_secs(10);
    let frigate = http::frigate(images::camera_jpeg(320, 180, 85));
    let r = rig::Rig {
        broker: mosquitto::start(),
        smtp: smtp::start().await,
        // Camera "slow" takes a while to hand out its picture.
        frigate: http::start(move |req: &http::Request| {
            let resp = frigate(req);
            if req.path.contains("-slow/") {
                resp.with_delay(FETCH)
            } else {
                resp
            }
        })
        .await,
    };
    // The session the daemon opens at start carries the first mail, and the server's 421
    // to that mail ends it; the retry is far off.
    r.smtp.inject(
        Fault::DataEnd("421 4.4.2 Timeout - closing connection.".into()),
        1,
    );
    let d = r
        .daemon(&[
            ("SNAPMAIL__OUTBOX__RETRY_MIN", "60s"),
            ("SNAPMAIL__OUTBOX__RETRY_MAX", "120s"),
            ("SNAPMAIL__SNAPSHOT__TIMEOUT", "60s"),
        ])
        .await;
    r.frigate_event("quick", 1).await;
    d.wait_for_log("421 4.4.2", T).await;
    assert_eq!(r.smtp.connections(), 1, "{}", r.smtp.transcript());

    r.frigate_event("slow", 2).await;
    // Well before the picture can have arrived, the next session is open, not logged in.
    wait_until("a session opened during the fetch", FETCH / 2, || {
        r.smtp.connections() == 2 && r.smtp.transcript().matches("C: EHLO").count() == 4
    })
    .await;
    assert!(r.smtp.messages().is_empty());
    assert_eq!(r.smtp.auth_attempts(), 1, "{}", r.smtp.transcript());
    // The mail takes that session over once the picture is there.
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(
        mails[0]
            .header("Subject")
            .as_deref()
            .map(|s| s.starts_with("slow")),
        Some(true)
    );
    assert_eq!(r.smtp.connections(), 2, "{}", r.smtp.transcript());
}
