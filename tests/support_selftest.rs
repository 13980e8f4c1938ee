//! Checks the test harness itself against real clients, so that a failing integration test
//! points at snapmail and not at the harness.

use std::io::Read as _;
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::http::{self, Response};
use crate::support::smtp::{self, Fault, SmtpServer};
use crate::support::{images, mosquitto, wait};

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// wait

#[tokio::test]
async fn wait_until_returns_once_condition_holds() {
    let calls = AtomicUsize::new(0);
    wait::wait_until("third poll", T, || {
        calls.fetch_add(1, Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let mut n = 0;
    wait::wait_until_blocking("second poll", T, || {
        n += 1;
        n == 2
    });
}

#[tokio::test]
#[should_panic(expected = "waiting for the impossible")]
async fn wait_until_panics_with_what_it_waited_for() {
    wait::wait_until("the impossible", Duration::from_millis(100), || false).await;
}

// ---------------------------------------------------------------------------------------
// mosquitto

async fn subscriber(
    port: u16,
    topic: &str,
    credentials: Option<(&str, &str)>,
) -> tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish> {
    let mut opts = rumqttc::MqttOptions::new(
        format!("selftest-sub-{}", std::process::id()),
        ("127.0.0.1", port),
    );
    opts.set_max_packet_size(64 << 20, 64 << 20);
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p.to_owned());
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::builder(opts).capacity(10).build();
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(T, subscribed_rx)
        .await
        .expect("timed out waiting for SubAck")
        .expect("subscriber event loop ended before SubAck");
    rx
}

async fn next_publish(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) -> rumqttc::Publish {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("timed out waiting for a publish")
        .expect("subscriber ended")
}

#[tokio::test]
async fn mosquitto_delivers_published_messages() {
    let broker = mosquitto::start();
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port));
    let mut rx = subscriber(broker.port, "frigate/#", None).await;

    broker
        .publish("frigate/events", br#"{"type":"new"}"#, false)
        .await;
    let p = next_publish(&mut rx).await;
    assert_eq!(p.topic, "frigate/events");
    assert_eq!(&p.payload[..], br#"{"type":"new"}"#);

    // big payloads (a camera snapshot over MQTT) get through too
    let big = vec![0xA5u8; 3 << 20];
    broker.publish("frigate/front/snapshot", &big, false).await;
    let p = next_publish(&mut rx).await;
    assert_eq!(p.payload.len(), big.len());

    assert!(
        broker.log().contains("frigate/events"),
        "log:\n{}",
        broker.log()
    );
}

#[tokio::test]
async fn mosquitto_retained_message_survives_graceful_restart() {
    let mut broker = mosquitto::start();
    let port = broker.port;
    broker.publish("cam/state", b"armed", true).await;
    broker.stop_graceful();
    assert!(!broker.is_running());
    assert!(StdTcpStream::connect(("127.0.0.1", port)).is_err());
    broker.restart();
    assert_eq!(broker.port, port);
    let mut rx = subscriber(broker.port, "cam/state", None).await;
    let p = next_publish(&mut rx).await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"armed");

    broker.stop();
    assert!(StdTcpStream::connect(("127.0.0.1", port)).is_err());
    broker.restart();
    broker.publish("cam/other", b"x", false).await;
}

#[tokio::test]
async fn mosquitto_with_users_refuses_anonymous_clients() {
    let broker = mosquitto::start_with_users(&[("cam", "s3cret"), ("other", "pw")]);
    let mut rx = subscriber(broker.port, "a/#", Some(("other", "pw"))).await;
    broker.publish("a/b", b"hi", false).await; // publishes as the first user
    assert_eq!(&next_publish(&mut rx).await.payload[..], b"hi");

    let opts = rumqttc::MqttOptions::new("anon", ("127.0.0.1", broker.port));
    let (_client, mut eventloop) = rumqttc::AsyncClient::builder(opts).capacity(10).build();
    let err = tokio::time::timeout(T, eventloop.poll())
        .await
        .expect("timed out waiting for the broker's answer")
        .expect_err("anonymous client was accepted");
    assert!(
        matches!(err, rumqttc::ConnectionError::ConnectionRefused(_)),
        "unexpected error: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// SMTP through lettre

fn tls_params(server: &SmtpServer) -> TlsParameters {
    TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(server.ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

fn transport(
    server: &SmtpServer,
    implicit_tls: bool,
    user: &str,
    secret: &str,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let (port, tls) = if implicit_tls {
        (server.tls_port, Tls::Wrapper(tls_params(server)))
    } else {
        (server.starttls_port, Tls::Required(tls_params(server)))
    };
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(port)
        .tls(tls)
        .credentials(Credentials::new(user.into(), secret.into()))
        .timeout(Some(T))
        .build()
}

fn mail(subject: &str) -> Message {
    Message::builder()
        .from("Cam <cam@example.com>".parse().unwrap())
        .to("owner@example.org".parse().unwrap())
        .subject(subject)
        .message_id(Some(format!(
            "<{}.selftest@example.com>",
            subject.replace(' ', "-")
        )))
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(
                    "Motion at the front door.\n.leading dot line\n".to_string(),
                ))
                .singlepart(Attachment::new("snap.jpg".into()).body(
                    images::camera_jpeg(320, 240, 80),
                    ContentType::parse("image/jpeg").unwrap(),
                )),
        )
        .unwrap()
}

async fn send_two_and_check(implicit_tls: bool) {
    let server = smtp::start().await;
    let t = transport(&server, implicit_tls, "cam@example.com", "abcdefghijklmnop");
    t.send(mail("first")).await.unwrap();
    // lettre hands a used connection back to its pool from a spawned task; let it run
    // (current-thread runtime) so the second mail can reuse the connection
    tokio::task::yield_now().await;
    t.send(mail("second")).await.unwrap();

    let got = server.wait_for_messages(2, T).await;
    assert_eq!(got.len(), 2);
    let port = if implicit_tls {
        server.tls_port
    } else {
        server.starttls_port
    };
    for m in &got {
        assert_eq!(m.port, port);
        assert_eq!(m.mail_from, "cam@example.com");
        assert_eq!(m.rcpt_to, vec!["owner@example.org".to_string()]);
        assert!(
            m.text().contains("\r\n.leading dot line\r\n"),
            "dot-stuffing undone"
        );
    }
    assert_eq!(got[0].header("subject").as_deref(), Some("first"));
    assert_eq!(got[1].header("SUBJECT").as_deref(), Some("second"));
    assert_eq!(
        got[0].message_id().as_deref(),
        Some("<first.selftest@example.com>")
    );
    assert!(got[0]
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/mixed;"));

    // lettre pools connections: both mails went over one connection and one AUTH
    assert_eq!(server.connections(), 1, "{}", server.transcript());
    assert_eq!(server.auth_attempts(), 1);
    assert_eq!(server.auth_attempt_times().len(), 1);

    let transcript = server.transcript();
    assert!(transcript.contains("C: AUTH PLAIN [auth]"), "{transcript}");
    assert!(transcript.contains("S: 235 2.7.0 Accepted"), "{transcript}");
    assert!(!transcript.contains("abcdefghijklmnop"), "{transcript}");
    let plain = B64.encode("\0cam@example.com\0abcdefghijklmnop");
    assert!(!transcript.contains(&plain), "{transcript}");
    assert!(
        transcript.contains("S: 220 smtp.test.invalid ESMTP snapmail-test - gsmtp"),
        "{transcript}"
    );
    assert!(transcript.contains("S: 250 2.0.0 OK  "), "{transcript}");
}

#[tokio::test]
async fn smtp_starttls_two_mails_one_connection() {
    send_two_and_check(false).await;
}

#[tokio::test]
async fn smtp_implicit_tls_two_mails_one_connection() {
    send_two_and_check(true).await;
}

async fn send_err(t: &AsyncSmtpTransport<Tokio1Executor>) -> String {
    t.send(mail("x"))
        .await
        .expect_err("send unexpectedly succeeded")
        .to_string()
}

#[tokio::test]
async fn smtp_account_password_gets_534_and_wrong_password_535() {
    let server = smtp::start().await;
    let e = send_err(&transport(
        &server,
        false,
        "cam@example.com",
        "correct-horse-account",
    ))
    .await;
    assert!(e.contains("534") && e.contains("5.7.9"), "{e}");
    assert!(e.contains("Application-specific password required"), "{e}");

    let e = send_err(&transport(&server, true, "cam@example.com", "nope")).await;
    assert!(e.contains("535") && e.contains("5.7.8"), "{e}");

    // the app password as Google displays it, with spaces: the server does not strip them
    let e = send_err(&transport(
        &server,
        true,
        "cam@example.com",
        "abcd efgh ijkl mnop",
    ))
    .await;
    assert!(e.contains("535"), "{e}");

    let e = send_err(&transport(
        &server,
        true,
        "someone@example.com",
        "abcdefghijklmnop",
    ))
    .await;
    assert!(e.contains("535"), "{e}");

    assert!(server.messages().is_empty());
    assert_eq!(server.auth_attempts(), 4);
    let transcript = server.transcript();
    assert!(
        !transcript.contains("correct-horse-account"),
        "{transcript}"
    );
    assert!(transcript.contains("InvalidSecondFactor"), "{transcript}");
}

#[tokio::test]
async fn smtp_login_and_xoauth2_mechanisms() {
    let server = SmtpServer::builder()
        .username("me@example.net")
        .app_password("qrstuvwxyzabcdef")
        .oauth_token("tok-123")
        .start()
        .await;
    let login = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.tls_port)
        .tls(Tls::Wrapper(tls_params(&server)))
        .credentials(Credentials::new(
            "me@example.net".into(),
            "qrstuvwxyzabcdef".into(),
        ))
        .authentication(vec![Mechanism::Login])
        .build();
    login.send(mail("login")).await.unwrap();

    let oauth = |token: &str| {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
            .port(server.starttls_port)
            .tls(Tls::Required(tls_params(&server)))
            .credentials(Credentials::new("me@example.net".into(), token.into()))
            .authentication(vec![Mechanism::Xoauth2])
            .build()
    };
    oauth("tok-123").send(mail("oauth")).await.unwrap();
    // Gmail answers a bad token with a 334 JSON challenge; lettre gives up there
    send_err(&oauth("expired")).await;
    assert!(server.transcript().contains("S: 334 eyJzdGF0dXMiOiI0MDAi"));

    assert_eq!(server.wait_for_messages(2, T).await.len(), 2);
    let transcript = server.transcript();
    assert!(transcript.contains("S: 334 VXNlcm5hbWU6"), "{transcript}");
    assert!(
        transcript.contains("C: AUTH XOAUTH2 [auth]"),
        "{transcript}"
    );
    assert!(!transcript.contains("tok-123"), "{transcript}");
    assert!(!transcript.contains("qrstuvwxyzabcdef"), "{transcript}");
}

#[tokio::test]
async fn smtp_plaintext_client_never_gets_to_send() {
    let server = smtp::start().await;
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.starttls_port)
        .tls(Tls::None)
        .credentials(Credentials::new(
            "cam@example.com".into(),
            "abcdefghijklmnop".into(),
        ))
        .build();
    let e = send_err(&t).await;
    // lettre sees no AUTH offered before STARTTLS and gives up; a client that pushed on
    // would get 530 5.7.0
    assert!(
        e.contains("530") || e.contains("No compatible authentication mechanism"),
        "{e}"
    );
    assert!(server.messages().is_empty());
    assert!(!server.transcript().contains("abcdefghijklmnop"));
}

#[tokio::test]
async fn smtp_faults() {
    let server = smtp::start().await;
    let good = || transport(&server, false, "cam@example.com", "abcdefghijklmnop");

    server.inject(
        Fault::Greeting("421 4.7.0 Try again later, closing connection.".into()),
        1,
    );
    let e = send_err(&good()).await;
    assert!(e.contains("421") && e.contains("Try again later"), "{e}");
    assert_eq!(server.faults_pending(), 0);

    server.inject(
        Fault::Auth("454 4.7.0 Too many login attempts, please try again later.".into()),
        1,
    );
    let e = send_err(&good()).await;
    assert!(
        e.contains("454") && e.contains("Too many login attempts"),
        "{e}"
    );

    server.inject(
        Fault::DataEnd("451 4.3.0 Mail server temporarily rejected message.".into()),
        1,
    );
    let e = send_err(&good()).await;
    assert!(e.contains("451"), "{e}");
    assert!(server.messages().is_empty());

    server.inject(
        Fault::DataEnd(
            "550-5.4.5 Daily user sending limit exceeded. For more information, go to\n\
             5.4.5  https://support.google.com/a/answer/166852"
                .into(),
        ),
        1,
    );
    let e = send_err(&good()).await;
    assert!(
        e.contains("550") && e.contains("Daily user sending limit"),
        "{e}"
    );
    let transcript = server.transcript();
    assert!(
        transcript.contains(
            "S: 550-5.4.5 Daily user sending limit exceeded. For more information, go to\n\
             S: 550 5.4.5  https://support.google.com/a/answer/166852 "
        ),
        "{transcript}"
    );
    assert!(server.messages().is_empty());

    server.inject(Fault::DropMidData, 1);
    send_err(&good()).await;
    assert!(server.messages().is_empty());
    assert!(server.transcript().contains("[data: dropped after"));

    // all used up: the next mail goes through
    assert_eq!(server.faults_pending(), 0);
    good().send(mail("after faults")).await.unwrap();
    assert_eq!(server.messages().len(), 1);

    // `times` counts occurrences
    server.inject(Fault::Greeting("421 4.7.0 Busy.".into()), 2);
    send_err(&good()).await;
    send_err(&good()).await;
    good().send(mail("third time")).await.unwrap();
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn smtp_down_refuses_and_comes_back_on_same_ports() {
    let server = smtp::start().await;
    let (p1, p2) = (server.starttls_port, server.tls_port);
    server.set_down(true);
    for port in [p1, p2] {
        let err = StdTcpStream::connect(("127.0.0.1", port)).expect_err("port still open");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    send_err(&transport(
        &server,
        false,
        "cam@example.com",
        "abcdefghijklmnop",
    ))
    .await;
    server.set_down(false);
    assert_eq!((server.starttls_port, server.tls_port), (p1, p2));
    for implicit_tls in [false, true] {
        transport(&server, implicit_tls, "cam@example.com", "abcdefghijklmnop")
            .send(mail("back"))
            .await
            .unwrap();
    }
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn smtp_silent_server_times_the_client_out() {
    let server = smtp::start().await;
    server.set_silent(true);
    let t = transport(&server, false, "cam@example.com", "abcdefghijklmnop");
    // lettre's own timeout only covers the TCP connect: against a server that accepts and
    // then says nothing, only an outer timeout ends the send
    let res = tokio::time::timeout(Duration::from_millis(500), t.send(mail("x"))).await;
    assert!(res.is_err(), "silent server answered: {res:?}");
    assert_eq!(server.connections(), 1);
    server.set_silent(false);
    transport(&server, true, "cam@example.com", "abcdefghijklmnop")
        .send(mail("talking again"))
        .await
        .unwrap();
}

#[tokio::test]
async fn silent_and_closed_ports() {
    let (port, task) = smtp::silent_port().await;
    let mut s = StdTcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).expect_err("silent port sent something");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    task.abort();

    let closed = smtp::closed_port();
    let err = StdTcpStream::connect(("127.0.0.1", closed)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

// ---------------------------------------------------------------------------------------
// SMTP by hand: exact replies

struct Raw<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    async fn reply(&mut self) -> Vec<String> {
        crate::support::smtp::read_reply(&mut self.io).await
    }

    async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// True once the server has closed the connection (whatever it sent before that, such
    /// as a TLS alert).
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(T, self.io.read_to_end(&mut rest))
            .await
            .is_ok()
    }
}

fn ends_gsmtp(reply: &[String]) {
    assert!(reply.last().unwrap().ends_with(" - gsmtp"), "{reply:?}");
}

async fn tls_connect(
    server: &SmtpServer,
    tcp: TcpStream,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = server.tls_connector();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn smtp_replies_match_gmail() {
    let server = smtp::start().await;
    assert!(std::fs::read_to_string(&server.ca_file)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let tcp = TcpStream::connect(("127.0.0.1", server.starttls_port))
        .await
        .unwrap();
    let mut c = Raw {
        io: BufReader::new(tcp),
    };
    assert_eq!(
        c.reply().await,
        ["220 smtp.test.invalid ESMTP snapmail-test - gsmtp"]
    );
    let ehlo = c.cmd("EHLO client.example").await;
    assert_eq!(
        ehlo,
        [
            "250-smtp.test.invalid at your service, [127.0.0.1]",
            "250-SIZE 35882577",
            "250-8BITMIME",
            "250-STARTTLS",
            "250-ENHANCEDSTATUSCODES",
            "250-PIPELINING",
            "250-CHUNKING",
            "250 SMTPUTF8",
        ]
    );
    let r = c.cmd("MAIL FROM:<cam@example.com>").await;
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        "530-5.7.0 Must issue a STARTTLS command first. For more information, go to"
    );
    assert!(r[2].starts_with("530 5.7.0 specifications. "));
    ends_gsmtp(&r);
    let r = c
        .cmd("AUTH PLAIN AGNhbUBleGFtcGxlLmNvbQBhYmNkZWZnaGlqa2xtbm9w")
        .await;
    assert!(r[0].starts_with("530-5.7.0 Must issue a STARTTLS"), "{r:?}");
    let r = c.cmd("NOOP").await;
    assert!(r[0].starts_with("250 2.0.0 OK "), "{r:?}");
    ends_gsmtp(&r);
    let r = c.cmd("FOO bar").await;
    assert!(
        r[0].starts_with("502 5.5.1 Unrecognized command. "),
        "{r:?}"
    );
    assert_eq!(c.cmd("STARTTLS").await, ["220 2.0.0 Ready to start TLS"]);

    let tls = tls_connect(&server, c.io.into_inner()).await;
    let mut c = Raw {
        io: BufReader::new(tls),
    };
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(!ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert_eq!(
        ehlo[3],
        "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH"
    );
    assert_eq!(ehlo.last().unwrap(), "250 SMTPUTF8");

    let r = c.cmd("MAIL FROM:<cam@example.com>").await;
    assert_eq!(
        r[0],
        "530-5.7.0 Authentication Required. For more information, go to"
    );
    assert!(r[1].starts_with("530 5.7.0  https://support.google.com/mail/?p=WantAuthError "));
    ends_gsmtp(&r);

    // XOAUTH2 failure: JSON challenge, then 535 after the empty line
    let bad = B64.encode("user=cam@example.com\x01auth=Bearer wrong\x01\x01");
    let r = c.cmd(&format!("AUTH XOAUTH2 {bad}")).await;
    let json = B64.decode(r[0].strip_prefix("334 ").unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#
    );
    let r = c.cmd("").await;
    assert_eq!(
        r[0],
        "535-5.7.8 Username and Password not accepted. For more information, go to"
    );
    ends_gsmtp(&r);

    // AUTH PLAIN with an empty continuation
    assert_eq!(c.cmd("AUTH PLAIN").await, ["334 "]);
    let r = c
        .cmd(&B64.encode("\0cam@example.com\0abcdefghijklmnop"))
        .await;
    assert_eq!(r, ["235 2.7.0 Accepted"]);

    let r = c
        .cmd("MAIL FROM:<cam@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8")
        .await;
    assert!(r[0].starts_with("250 2.1.0 OK "), "{r:?}");
    ends_gsmtp(&r);
    let r = c.cmd("RCPT TO:<a@example.org>").await;
    assert!(r[0].starts_with("250 2.1.5 OK "), "{r:?}");
    let r = c.cmd("RCPT TO:<b@example.org>").await;
    assert!(r[0].starts_with("250 2.1.5 OK "), "{r:?}");
    let r = c.cmd("DATA").await;
    assert!(r[0].starts_with("354  Go ahead "), "{r:?}");
    let r = c
        .cmd("Subject: raw\r\nX-Long: one\r\n two\r\n\r\n..dot\r\nend\r\n.")
        .await;
    assert!(r[0].starts_with("250 2.0.0 OK  "), "{r:?}");
    ends_gsmtp(&r);

    // second message on the same connection, with pipelining
    c.io.get_mut()
        .write_all(b"MAIL FROM:<>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    assert!(c.reply().await[0].starts_with("250 2.1.0"));
    assert!(c.reply().await[0].starts_with("250 2.1.5"));
    assert!(c.reply().await[0].starts_with("354"));
    assert!(c.cmd("Subject: two\r\n\r\nhi\r\n.").await[0].starts_with("250 2.0.0 OK"));

    // BDAT
    c.cmd("MAIL FROM:<cam@example.com>").await;
    c.cmd("RCPT TO:<d@example.org>").await;
    c.io.get_mut()
        .write_all(b"BDAT 10\r\nSubject: bBDAT 8 LAST\r\n\r\n\r\nxy\r\n")
        .await
        .unwrap();
    assert!(c.reply().await[0].starts_with("250 2.0.0 OK"));
    assert!(c.reply().await[0].starts_with("250 2.0.0 OK  "));

    let r = c.cmd("RSET").await;
    assert!(r[0].starts_with("250 2.1.5 Flushed "), "{r:?}");
    let r = c.cmd("QUIT").await;
    assert!(r[0].starts_with("221 2.0.0 closing connection "), "{r:?}");
    assert!(c.closed().await);

    let got = server.messages();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].rcpt_to, ["a@example.org", "b@example.org"]);
    assert_eq!(
        got[0].data,
        b"Subject: raw\r\nX-Long: one\r\n two\r\n\r\n.dot\r\nend\r\n"
    );
    assert_eq!(got[0].header("x-long").as_deref(), Some("one two"));
    assert_eq!(got[0].body(), b".dot\r\nend\r\n");
    assert_eq!(got[1].mail_from, "");
    assert_eq!(got[2].data, b"Subject: b\r\n\r\nxy\r\n");
    assert_eq!(got[2].header("Subject").as_deref(), Some("b"));

    // AUTH LOGIN by hand, with the account password: 534
    let tcp = TcpStream::connect(("127.0.0.1", server.tls_port))
        .await
        .unwrap();
    let mut c = Raw {
        io: BufReader::new(tls_connect(&server, tcp).await),
    };
    c.reply().await;
    c.cmd("EHLO x").await;
    assert_eq!(c.cmd("AUTH LOGIN").await, ["334 VXNlcm5hbWU6"]);
    assert_eq!(
        c.cmd(&B64.encode("cam@example.com")).await,
        ["334 UGFzc3dvcmQ6"]
    );
    let r = c.cmd(&B64.encode("correct-horse-account")).await;
    assert_eq!(
        r[0],
        "534-5.7.9 Application-specific password required. For more information, go to"
    );
    assert!(r[1].starts_with("534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "));
    ends_gsmtp(&r);
    assert!(!server
        .transcript()
        .contains(&B64.encode("correct-horse-account")));
}

#[tokio::test]
async fn smtp_survives_broken_clients() {
    let server = smtp::start().await;
    // TLS to the plain port
    let tcp = TcpStream::connect(("127.0.0.1", server.starttls_port))
        .await
        .unwrap();
    let mut greeting = String::new();
    let mut r = BufReader::new(tcp);
    r.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220 "));
    let tcp = r.into_inner();
    let res = tokio::time::timeout(
        T,
        server
            .tls_connector()
            .connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .expect("TLS to the plain port should fail fast");
    assert!(res.is_err());

    // plain text to the TLS port
    let mut tcp = TcpStream::connect(("127.0.0.1", server.tls_port))
        .await
        .unwrap();
    tcp.write_all(b"EHLO plain.example\r\n").await.unwrap();
    let mut c = Raw {
        io: BufReader::new(tcp),
    };
    assert!(c.closed().await);

    // hang up mid-dialogue, and mid-DATA
    let tcp = TcpStream::connect(("127.0.0.1", server.tls_port))
        .await
        .unwrap();
    let mut c = Raw {
        io: BufReader::new(tls_connect(&server, tcp).await),
    };
    c.reply().await;
    c.cmd("EHLO x").await;
    c.cmd(&format!(
        "AUTH PLAIN {}",
        B64.encode("\0cam@example.com\0abcdefghijklmnop")
    ))
    .await;
    c.cmd("MAIL FROM:<cam@example.com>").await;
    c.cmd("RCPT TO:<a@example.org>").await;
    c.cmd("DATA").await;
    c.io.get_mut()
        .write_all(b"Subject: cut\r\n\r\npart")
        .await
        .unwrap();
    drop(c);
    drop(
        TcpStream::connect(("127.0.0.1", server.starttls_port))
            .await
            .unwrap(),
    );

    // a silent client does not block others
    let _idle = TcpStream::connect(("127.0.0.1", server.tls_port))
        .await
        .unwrap();
    transport(&server, true, "cam@example.com", "abcdefghijklmnop")
        .send(mail("still works"))
        .await
        .unwrap();
    transport(&server, false, "cam@example.com", "abcdefghijklmnop")
        .send(mail("still works"))
        .await
        .unwrap();
    assert_eq!(server.messages().len(), 2);
    assert_eq!(server.connections(), 7);
}

// ---------------------------------------------------------------------------------------
// HTTP

fn client() -> reqwest::Client {
    crate::support::install_crypto();
    reqwest::Client::builder().timeout(T).build().unwrap()
}

#[tokio::test]
async fn http_frigate_snapshot() {
    let jpeg = images::camera_jpeg(640, 360, 80);
    let server = http::start(http::frigate(jpeg.clone())).await;
    let c = client();
    let resp = c
        .get(format!(
            "{}/api/events/1718000000.123456-abc123/snapshot.jpg?bbox=1&h=720",
            server.url()
        ))
        .header("X-Test", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), jpeg);

    let resp = c
        .get(format!("{}/api/events/nope/clip.mp4", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "Event not found");

    let reqs = server.requests();
    assert_eq!(server.request_count(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].path,
        "/api/events/1718000000.123456-abc123/snapshot.jpg?bbox=1&h=720"
    );
    assert_eq!(reqs[0].query_param("h").as_deref(), Some("720"));
    assert_eq!(reqs[0].query_param("missing"), None);
    assert_eq!(reqs[0].header("x-TEST"), Some("yes"));
}

#[tokio::test]
async fn http_custom_handler_body_and_delay() {
    let server = http::start(|req: &http::Request| {
        if req.path_only() == "/slow" {
            Response::status(200, "late").with_delay(Duration::from_millis(1500))
        } else {
            Response::json(201, &format!("{{\"len\":{}}}", req.body.len()))
                .with_header("X-Cam", "front")
        }
    })
    .await;
    let c = client();
    let resp = c
        .post(format!("{}/upload?name=a%20b+c", server.url()))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-cam"], "front");
    assert_eq!(resp.text().await.unwrap(), r#"{"len":1000}"#);
    assert_eq!(server.requests()[0].body.len(), 1000);
    assert_eq!(
        server.requests()[0].query_param("name").as_deref(),
        Some("a b c")
    );

    let err = c
        .get(format!("{}/slow", server.url()))
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .expect_err("slow response arrived in time");
    assert!(err.is_timeout(), "{err:?}");
    server.wait_for_requests(2, T).await;
}

#[tokio::test]
async fn http_digest_auth() {
    let jpeg = images::camera_jpeg(320, 180, 70);
    let server = http::start(http::digest_protected(
        "admin",
        "hik12345",
        "IP Camera(C1234)",
        http::frigate(jpeg.clone()),
    ))
    .await;
    let c = client();
    let path = "/api/events/1/snapshot.jpg";
    let url = format!("{}{path}", server.url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with(r#"Digest realm="IP Camera(C1234)", qop="auth", nonce=""#));
    assert!(challenge.ends_with("algorithm=MD5"));
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();

    let md5 = |s: String| {
        use md5::{Digest, Md5};
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let authorization = |pass: &str| {
        let ha1 = md5(format!("admin:IP Camera(C1234):{pass}"));
        let ha2 = md5(format!("GET:{path}"));
        let response = md5(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        format!(
            r#"Digest username="admin", realm="IP Camera(C1234)", nonce="{nonce}", uri="{path}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b", response="{response}""#
        )
    };
    let resp = c
        .get(&url)
        .header("Authorization", authorization("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("wrong response"));

    let resp = c
        .get(&url)
        .header("Authorization", authorization("hik12345"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), jpeg);
}

// ---------------------------------------------------------------------------------------
// images

#[test]
fn images_decode_at_their_size() {
    let small = images::camera_jpeg(640, 480, 80);
    assert!(images::is_jpeg(&small));
    assert_eq!(images::decode_dims(&small), (640, 480));
    assert_eq!(images::camera_jpeg(640, 480, 80), small, "deterministic");

    let png = images::png(100, 50);
    assert!(!images::is_jpeg(&png));
    assert_eq!(images::decode_dims(&png), (100, 50));

    let uhd = images::camera_jpeg(3840, 2160, 85);
    assert!(uhd.len() > 1_500_000, "4K frame only {} bytes", uhd.len());
    assert_eq!(images::decode_dims(&uhd), (3840, 2160));
}

#[test]
#[should_panic(expected = "not a decodable image")]
fn decode_dims_rejects_garbage() {
    let mut jpeg = images::camera_jpeg(64, 64, 80);
    jpeg.truncate(100);
    images::decode_dims(&jpeg);
}
