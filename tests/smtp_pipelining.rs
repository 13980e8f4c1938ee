//! The Gmail-like SMTP test server under PIPELINING (RFC 2920) and CHUNKING (RFC 3030):
//! replies in order and together for a pipelined group, failures inside a group answered
//! one by one, nothing accepted after STARTTLS in the same group, the idle timeout, and the
//! per-connection log the WAN bench counts round trips from.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::smtp::{self, SmtpServer, Step};

const T: Duration = Duration::from_secs(10);

struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &str) {
        let io = self.io.get_mut();
        io.write_all(bytes.as_bytes()).await.unwrap();
        // Over TLS, what the socket could not take yet waits in rustls until flushed.
        io.flush().await.unwrap();
    }

    async fn reply(&mut self) -> Vec<String> {
        crate::support::smtp::read_reply(&mut self.io).await
    }

    /// The first line of each of the next `n` replies.
    async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.reply().await.remove(0));
        }
        out
    }

    async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// What the first read after a write brings: the replies that arrived together.
    async fn one_read(&mut self) -> String {
        let buf = tokio::time::timeout(T, self.io.fill_buf())
            .await
            .expect("timed out waiting for replies")
            .unwrap();
        String::from_utf8_lossy(buf).into_owned()
    }

    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(T, self.io.read_to_end(&mut rest))
            .await
            .is_ok()
    }
}

async fn plain(server: &SmtpServer) -> Client<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", server.starttls_port))
        .await
        .unwrap();
    Client {
        io: BufReader::new(tcp),
    }
}

/// Greeting, EHLO, STARTTLS, TLS, EHLO, AUTH PLAIN, each waited for.
async fn logged_in(server: &SmtpServer) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut c = plain(server).await;
    c.reply().await;
    c.cmd("EHLO client.example").await;
    assert_eq!(c.cmd("STARTTLS").await, ["220 2.0.0 Ready to start TLS"]);
    let mut c = Client {
        io: BufReader::new(tls(server, c.io.into_inner()).await),
    };
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(ehlo.iter().any(|l| l == "250-PIPELINING"), "{ehlo:?}");
    assert!(ehlo.iter().any(|l| l == "250-CHUNKING"), "{ehlo:?}");
    let auth = B64.encode("\0cam@example.com\0abcdefghijklmnop");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {auth}")).await,
        ["235 2.7.0 Accepted"]
    );
    c
}

async fn tls(server: &SmtpServer, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    server
        .tls_connector()
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn steps(server: &SmtpServer, conn: usize) -> Vec<Step> {
    server.conn_logs()[conn - 1]
        .steps
        .iter()
        .map(|(_, s)| s.clone())
        .collect()
}

/// The replies each `Reply` step followed, in order.
fn waited_after(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Reply { after, .. } => Some(after.chars().take(3).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_pipelined_group_gets_its_replies_in_order_and_together() {
    let server = smtp::start().await;
    let mut c = logged_in(&server).await;
    c.send("MAIL FROM:<cam@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await;
    // One write from the server: the group's four replies arrive in one read.
    let together = c.one_read().await;
    assert_eq!(together.matches("\r\n").count(), 4, "{together:?}");
    assert_eq!(
        c.replies(4)
            .await
            .iter()
            .map(|r| &r[..9])
            .collect::<Vec<_>>(),
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354  Go a"]
    );
    assert!(c.cmd("Subject: one\r\n\r\nhi\r\n.").await[0].starts_with("250 2.0.0 OK  "));

    // MAIL, RCPT and the whole message as BDAT LAST in one go (RFC 3030 allows it).
    c.send("MAIL FROM:<cam@example.com>\r\nRCPT TO:<c@example.org>\r\nBDAT 23 LAST\r\nSubject: two\r\n\r\nhello\r\n")
        .await;
    let together = c.one_read().await;
    assert_eq!(together.matches("\r\n").count(), 3, "{together:?}");
    let r = c.replies(3).await;
    assert!(r[0].starts_with("250 2.1.0 OK"), "{r:?}");
    assert!(r[1].starts_with("250 2.1.5 OK"), "{r:?}");
    assert!(r[2].starts_with("250 2.0.0 OK  "), "{r:?}");

    let got = server.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpt_to, ["a@example.org", "b@example.org"]);
    assert_eq!(got[1].data, b"Subject: two\r\n\r\nhello\r\n");
    assert_eq!(got[1].rcpt_to, ["c@example.org"]);
}

#[tokio::test]
async fn failures_inside_a_group_are_answered_one_by_one() {
    let server = smtp::start().await;
    let mut c = logged_in(&server).await;
    // A bad recipient among good ones: the rest of the group goes on.
    c.send("MAIL FROM:<cam@example.com>\r\nRCPT TO:<>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n")
        .await;
    let r = c.replies(4).await;
    assert!(r[0].starts_with("250 2.1.0"), "{r:?}");
    assert!(r[1].starts_with("555 5.5.2"), "{r:?}");
    assert!(r[2].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[3].starts_with("354"), "{r:?}");
    assert!(c.cmd("Subject: x\r\n\r\n.").await[0].starts_with("250 2.0.0 OK"));
    // A refused MAIL: RCPT and DATA after it are refused too, and nothing is kept.
    c.send("MAIL FROM:<cam@example.com> FOO=1\r\nRCPT TO:<a@example.org>\r\nBDAT 3 LAST\r\nabc")
        .await;
    let r = c.replies(3).await;
    assert!(
        r[0].starts_with("555 5.5.4 Unsupported option: FOO"),
        "{r:?}"
    );
    assert!(r[1].starts_with("503 5.5.1 MAIL first."), "{r:?}");
    assert!(r[2].starts_with("503 5.5.1 RCPT first."), "{r:?}");
    assert_eq!(c.cmd("NOOP").await[0].get(..3), Some("250"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn nothing_is_taken_after_starttls_in_the_same_group() {
    let server = smtp::start().await;
    let mut c = plain(&server).await;
    c.reply().await;
    c.send("EHLO client.example\r\nSTARTTLS\r\nMAIL FROM:<cam@example.com>\r\n")
        .await;
    let ehlo = c.reply().await;
    assert_eq!(ehlo.last().unwrap(), "250 SMTPUTF8");
    assert_eq!(c.reply().await, ["220 2.0.0 Ready to start TLS"]);
    assert!(c.closed().await, "the server went on after STARTTLS");
    assert!(server
        .transcript()
        .contains("data pipelined after STARTTLS, closing"));
    assert!(!server.transcript().contains("C: MAIL"));
}

#[tokio::test]
async fn the_log_counts_what_the_client_waited_for() {
    let server = smtp::start().await;
    // Lock-step: every reply waited for.
    let mut c = logged_in(&server).await;
    assert!(c.cmd("MAIL FROM:<cam@example.com>").await[0].starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.org>").await[0].starts_with("250"));
    assert!(c.cmd("DATA").await[0].starts_with("354"));
    assert!(c.cmd("Subject: a\r\n\r\nx\r\n.").await[0].starts_with("250"));
    let lockstep = steps(&server, 1);
    assert_eq!(
        waited_after(&lockstep),
        ["220", "250", "250", "235", "250", "250", "354"],
        "{lockstep:?}"
    );
    assert!(lockstep.contains(&Step::StartTls), "{lockstep:?}");
    assert!(
        lockstep.contains(&Step::Tls {
            version: "TLSv1_3".into(),
            round_trips: 1
        }),
        "{lockstep:?}"
    );
    assert_eq!(
        lockstep.last(),
        Some(&Step::Accepted { message: 0 }),
        "{lockstep:?}"
    );

    // Pipelined: the whole transaction is one group, one wait.
    let mut c = logged_in(&server).await;
    c.send("MAIL FROM:<cam@example.com>\r\nRCPT TO:<a@example.org>\r\nBDAT 14 LAST\r\nSubject: b\r\n\r\n")
        .await;
    assert!(c.replies(3).await[2].starts_with("250 2.0.0 OK  "));
    let pipelined = steps(&server, 2);
    assert_eq!(
        waited_after(&pipelined),
        ["220", "250", "250", "235"],
        "{pipelined:?}"
    );
    assert_eq!(pipelined.last(), Some(&Step::Accepted { message: 1 }));
}

#[tokio::test]
async fn a_body_that_pauses_is_logged_as_a_stall_not_a_reply() {
    let server = smtp::start().await;
    let mut c = logged_in(&server).await;
    c.send("MAIL FROM:<cam@example.com>\r\nRCPT TO:<a@example.org>\r\nBDAT 10 LAST\r\n12345")
        .await;
    // The pause is the stimulus (a sender held back by TCP), not a wait for a condition.
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send("67890").await;
    assert!(c.replies(3).await[2].starts_with("250 2.0.0 OK  "));
    let log = steps(&server, 1);
    let stalls: Vec<_> = log
        .iter()
        .filter_map(|s| match s {
            Step::Stall { waited } => Some(*waited),
            _ => None,
        })
        .collect();
    assert_eq!(stalls.len(), 1, "{log:?}");
    assert!(stalls[0] >= Duration::from_millis(90), "{stalls:?}");
    assert_eq!(waited_after(&log), ["220", "250", "250", "235"], "{log:?}");
}

#[tokio::test]
async fn idle_sessions_are_closed_like_gmail_does() {
    let server = SmtpServer::builder()
        .idle_timeout(Duration::from_millis(300))
        .start()
        .await;
    let mut c = plain(&server).await;
    c.reply().await;
    assert_eq!(c.cmd("EHLO x").await.last().unwrap(), "250 SMTPUTF8");
    let r = c.reply().await;
    assert!(
        r[0].starts_with("451 4.4.2 Timeout - closing connection. "),
        "{r:?}"
    );
    assert!(c.closed().await);
    assert!(steps(&server, 1).contains(&Step::IdleClose));
}

#[tokio::test]
async fn a_large_chunk_pipelined_behind_its_commands_is_taken_whole() {
    let server = smtp::start().await;
    let mut c = logged_in(&server).await;
    let size = 300_000;
    let mut group =
        format!("MAIL FROM:<cam@example.com>\r\nRCPT TO:<a@example.org>\r\nBDAT {size} LAST\r\n");
    // A body of base64-like lines (76 characters and CRLF), as a mail carries a picture.
    let line = format!("{}\r\n", "A".repeat(76));
    let body: String = line.repeat(size / line.len() + 1)[..size].to_owned();
    group.push_str(&body);
    c.send(&group).await;
    let r = c.replies(3).await;
    assert!(r[2].starts_with("250 2.0.0 OK  "), "{r:?}");
    assert_eq!(server.messages()[0].data.len(), size);
}
