//! The SMTP dialogue over one connection: greeting, EHLO, STARTTLS, AUTH, and mail
//! transactions sent as few flights as the server allows.
//!
//! With PIPELINING (RFC 2920) a whole transaction is one flight: `[RSET] [AUTH PLAIN …]
//! MAIL FROM RCPT TO… BDAT <n> LAST <message>` (CHUNKING, RFC 3030) is written at once and
//! the replies are read in order; without CHUNKING it is `… DATA`, then the dot-stuffed
//! message once the server has said 354. Without PIPELINING every command waits for its
//! reply. Nothing is ever pipelined after STARTTLS, EHLO or an AUTH that may need another
//! step (LOGIN, XOAUTH2); AUTH PLAIN with its initial response completes in one step, so
//! RFC 4954 lets it lead a pipelined group.
//!
//! A refused transaction is read to its last reply, so the connection stays in step, and
//! the server's transaction state is cleared by an `RSET` at the head of the next flight,
//! which costs no round trip of its own. Recipients the server refuses while others are
//! accepted do not stop the message: it goes to those accepted, and the refusals are
//! reported beside the final 250 (a retry would send it twice to the others).
//!
//! AUTH payloads are never logged, and are cut out of any reply text that echoes them.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::reply::{parse, Capabilities, Parsed, Reply};
use crate::secret::Secret;

/// Which command a reply answered (or would have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    StartTls,
    Auth(Mechanism),
    Rset,
    Mail,
    Rcpt,
    /// The `DATA` command itself (354 expected).
    Data,
    /// The end of the message: the dot after DATA, or `BDAT … LAST`.
    Message,
    Noop,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth(m) => m.name(),
            Stage::Rset => "RSET",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Message => "end of message",
            Stage::Noop => "NOOP",
        }
    }
}

/// A SASL mechanism this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "AUTH PLAIN",
            Mechanism::Login => "AUTH LOGIN",
            Mechanism::XOAuth2 => "AUTH XOAUTH2",
        }
    }
}

/// How to log in: an app password, or an XOAUTH2 access token.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: Secret,
    pub xoauth2: bool,
}

impl Credentials {
    /// The mechanism to use with this server: XOAUTH2 for tokens; PLAIN, else LOGIN, for
    /// passwords.
    pub fn mechanism(&self, caps: &Capabilities) -> Result<Mechanism, SmtpError> {
        let wanted: &[(Mechanism, &str)] = if self.xoauth2 {
            &[(Mechanism::XOAuth2, "XOAUTH2")]
        } else {
            &[(Mechanism::Plain, "PLAIN"), (Mechanism::Login, "LOGIN")]
        };
        wanted
            .iter()
            .find(|(_, name)| caps.offers_auth(name))
            .map(|(m, _)| *m)
            .ok_or_else(|| SmtpError::Unsupported {
                detail: format!(
                    "the server offers no login method snapmail can use for {} (it offers: {})",
                    if self.xoauth2 {
                        "XOAUTH2"
                    } else {
                        "a password (PLAIN or LOGIN)"
                    },
                    if caps.auth.is_empty() {
                        "none".to_owned()
                    } else {
                        caps.auth.join(" ")
                    }
                ),
                need: Need::Login,
            })
    }

    /// Whether an `AUTH PLAIN` with these credentials may lead a pipelined flight.
    pub fn pipelinable(&self, caps: &Capabilities) -> bool {
        caps.pipelining && matches!(self.mechanism(caps), Ok(Mechanism::Plain))
    }

    fn plain(&self) -> String {
        B64.encode(format!("\0{}\0{}", self.username, self.secret.expose()))
    }

    fn xoauth2_response(&self) -> String {
        B64.encode(format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.username,
            self.secret.expose()
        ))
    }

    /// Every form in which these credentials travel, to cut out of reply texts.
    fn forms(&self) -> Vec<String> {
        let mut forms = vec![
            self.plain(),
            self.xoauth2_response(),
            B64.encode(self.secret.expose()),
        ];
        if !self.secret.is_empty() {
            forms.push(self.secret.expose().to_owned());
        }
        forms
    }
}

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpError {
    /// The server answered with a refusal.
    Refused { stage: Stage, reply: Reply },
    /// The server answered a flight with `421` before accepting anything of it: it is
    /// closing the connection and took nothing.
    Closing { stage: Stage, reply: Reply },
    /// The connection broke, the server closed it, or it sent something that is not SMTP.
    /// `answered` counts the positive replies read in this flight before that: none means
    /// the server took nothing of it.
    Broken {
        stage: Stage,
        detail: String,
        answered: usize,
    },
    /// The server lacks something this client needs.
    Unsupported { detail: String, need: Need },
}

/// What a server lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    StartTls,
    /// A login method for these credentials.
    Login,
    /// SMTPUTF8 or 8BITMIME for this message.
    Encoding,
}

impl SmtpError {
    /// A reused connection that turned out dead before the server answered anything of
    /// this flight, or that the server is closing (421 first): nothing was accepted, and
    /// a new connection may carry the mail.
    pub fn is_stale(&self) -> bool {
        match self {
            SmtpError::Broken { answered, .. } => *answered == 0,
            SmtpError::Closing { .. } => true,
            SmtpError::Refused { .. } | SmtpError::Unsupported { .. } => false,
        }
    }
}

/// One message to send.
pub struct Outgoing<'a> {
    /// The reverse path; empty for the null sender.
    pub from: String,
    pub to: Vec<String>,
    pub body: &'a [u8],
}

/// The server's acceptance of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The reply to the end of the message (250).
    pub reply: Reply,
    /// Recipients the server refused while it took the message for the others.
    pub refused: Vec<(String, Reply)>,
}

/// One SMTP connection over any byte stream.
pub struct Conn<S> {
    io: S,
    /// Bytes received and not yet parsed.
    buf: Vec<u8>,
    pub caps: Capabilities,
    /// A refused transaction may have left state on the server: the next one starts
    /// with `RSET`.
    rset_pending: bool,
    /// The dialogue is out of step (or the connection is gone): never reuse it.
    broken: bool,
}

enum Payload<'a> {
    Line(Vec<u8>),
    /// `BDAT <n> LAST` and the message.
    Chunk(Vec<u8>, &'a [u8]),
    /// The message after 354: dot-stuffed, with its terminating dot.
    Dotted(Cow<'a, [u8]>, &'static [u8]),
}

struct Step<'a> {
    stage: Stage,
    payload: Payload<'a>,
    /// Wait for the replies so far before writing the next step.
    sync: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Conn<S> {
        Conn {
            io,
            buf: Vec::new(),
            caps: Capabilities::default(),
            rset_pending: false,
            broken: false,
        }
    }

    /// The stream, for the TLS upgrade after STARTTLS.
    pub fn into_io(self) -> S {
        self.io
    }

    /// Whether this connection may carry another mail.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Without waiting: has the server closed the connection or said something nobody
    /// asked for (e.g. `421 … closing connection` after an idle timeout)? Either way the
    /// connection is finished.
    pub fn is_stale(&mut self) -> bool {
        if self.broken || !self.buf.is_empty() {
            return true;
        }
        let mut byte = [0u8; 512];
        let mut rb = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match Pin::new(&mut self.io).poll_read(&mut cx, &mut rb) {
            Poll::Pending => false,
            Poll::Ready(_) => {
                self.broken = true;
                true
            }
        }
    }

    /// Wait until the server says something or closes the connection. Asked nothing, it
    /// has nothing to say but that it is closing (`421`, Gmail's `451 4.4.2 Timeout`): the
    /// connection is finished either way. Cancel-safe: dropped while waiting, it has read
    /// nothing.
    pub async fn closed(&mut self) {
        let mut chunk = [0u8; 512];
        let _ = self.io.read(&mut chunk).await;
        self.broken = true;
    }

    async fn read_reply(&mut self, stage: Stage, answered: usize) -> Result<Reply, SmtpError> {
        loop {
            match parse(&self.buf) {
                Parsed::Reply(reply, used) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Parsed::Malformed(why) => {
                    self.broken = true;
                    return Err(SmtpError::Broken {
                        stage,
                        detail: format!("the server's answer to {}: {why}", stage.name()),
                        answered,
                    });
                }
                Parsed::Partial => {}
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk).await {
                Ok(0) => {
                    self.broken = true;
                    return Err(SmtpError::Broken {
                        stage,
                        detail: format!(
                            "the server closed the connection instead of answering {}",
                            stage.name()
                        ),
                        answered,
                    });
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    self.broken = true;
                    return Err(SmtpError::Broken {
                        stage,
                        detail: format!("reading the answer to {}: {}", stage.name(), chain(&e)),
                        answered,
                    });
                }
            }
        }
    }

    async fn write(&mut self, stage: Stage, parts: &[&[u8]]) -> Result<(), SmtpError> {
        let result = async {
            for part in parts {
                self.io.write_all(part).await?;
            }
            self.io.flush().await
        }
        .await;
        result.map_err(|e| {
            self.broken = true;
            SmtpError::Broken {
                stage,
                detail: format!("sending {}: {}", stage.name(), chain(&e)),
                answered: 0,
            }
        })
    }

    /// One command, one reply.
    async fn command(&mut self, stage: Stage, line: &[u8]) -> Result<Reply, SmtpError> {
        self.write(stage, &[line]).await?;
        self.read_reply(stage, 0).await
    }

    /// The server's 220 greeting.
    pub async fn greeting(&mut self) -> Result<Reply, SmtpError> {
        let reply = self.read_reply(Stage::Greeting, 0).await?;
        if reply.code != 220 {
            self.broken = true;
            return Err(SmtpError::Refused {
                stage: Stage::Greeting,
                reply,
            });
        }
        Ok(reply)
    }

    /// EHLO; the reply's capabilities replace the previous ones.
    pub async fn ehlo(&mut self, name: &str) -> Result<(), SmtpError> {
        let reply = self
            .command(Stage::Ehlo, format!("EHLO {name}\r\n").as_bytes())
            .await?;
        if reply.code != 250 {
            self.broken = true;
            return Err(SmtpError::Refused {
                stage: Stage::Ehlo,
                reply,
            });
        }
        self.caps = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    /// STARTTLS, up to the server's 220; the caller then runs the TLS handshake on
    /// [`Conn::into_io`].
    pub async fn starttls(&mut self) -> Result<(), SmtpError> {
        if !self.caps.starttls {
            return Err(SmtpError::Unsupported {
                detail: "the server does not offer STARTTLS".into(),
                need: Need::StartTls,
            });
        }
        let reply = self.command(Stage::StartTls, b"STARTTLS\r\n").await?;
        if reply.code != 220 {
            self.broken = true;
            return Err(SmtpError::Refused {
                stage: Stage::StartTls,
                reply,
            });
        }
        // Bytes after the 220 were sent before TLS and would be taken as coming from inside
        // it (the STARTTLS command injection of CVE-2011-0411, seen from the client side).
        if !self.buf.is_empty() {
            self.broken = true;
            return Err(SmtpError::Broken {
                stage: Stage::StartTls,
                detail: "the server sent data after its STARTTLS reply".into(),
                answered: 1,
            });
        }
        Ok(())
    }

    /// Log in, waiting for each reply.
    pub async fn auth(&mut self, creds: &Credentials) -> Result<(), SmtpError> {
        let mechanism = creds.mechanism(&self.caps)?;
        let stage = Stage::Auth(mechanism);
        let forms = creds.forms();
        let result = async {
            let reply = match mechanism {
                Mechanism::Plain => {
                    let reply = self
                        .command(
                            stage,
                            format!("AUTH PLAIN {}\r\n", creds.plain()).as_bytes(),
                        )
                        .await?;
                    if reply.code == 334 {
                        // A server that ignores the initial response asks for it again.
                        self.command(stage, format!("{}\r\n", creds.plain()).as_bytes())
                            .await?
                    } else {
                        reply
                    }
                }
                Mechanism::Login => {
                    let reply = self.command(stage, b"AUTH LOGIN\r\n").await?;
                    if reply.code != 334 {
                        reply
                    } else {
                        let user = B64.encode(&creds.username);
                        let reply = self
                            .command(stage, format!("{user}\r\n").as_bytes())
                            .await?;
                        if reply.code != 334 {
                            reply
                        } else {
                            let pass = B64.encode(creds.secret.expose());
                            self.command(stage, format!("{pass}\r\n").as_bytes())
                                .await?
                        }
                    }
                }
                Mechanism::XOAuth2 => {
                    let line = format!("AUTH XOAUTH2 {}\r\n", creds.xoauth2_response());
                    let reply = self.command(stage, line.as_bytes()).await?;
                    if reply.code == 334 {
                        // Gmail's way of refusing a token: a JSON challenge, answered with
                        // an empty line, then the final 535.
                        self.command(stage, b"\r\n").await?
                    } else {
                        reply
                    }
                }
            };
            if reply.code == 235 {
                Ok(())
            } else {
                self.broken = true;
                Err(SmtpError::Refused { stage, reply })
            }
        }
        .await;
        result.map_err(|e| redact(e, &forms))
    }

    /// NOOP: is the server still there?
    pub async fn noop(&mut self) -> Result<(), SmtpError> {
        let reply = self.command(Stage::Noop, b"NOOP\r\n").await?;
        if reply.is_positive() {
            Ok(())
        } else {
            self.broken = true;
            Err(SmtpError::Refused {
                stage: Stage::Noop,
                reply,
            })
        }
    }

    /// QUIT, reading the reply if it comes; the caller bounds the wait.
    pub async fn quit(&mut self) {
        if self.write(Stage::Noop, &[b"QUIT\r\n"]).await.is_ok() {
            let _ = self.read_reply(Stage::Noop, 0).await;
        }
        let _ = self.io.shutdown().await;
        self.broken = true;
    }

    /// Send one message. `auth`: log in first, in the same flight (only when
    /// [`Credentials::pipelinable`]).
    pub async fn send(
        &mut self,
        mail: &Outgoing<'_>,
        auth: Option<&Credentials>,
    ) -> Result<Sent, SmtpError> {
        let forms = auth.map(Credentials::forms).unwrap_or_default();
        self.send_inner(mail, auth)
            .await
            .map_err(|e| redact(e, &forms))
    }

    async fn send_inner(
        &mut self,
        mail: &Outgoing<'_>,
        mut auth: Option<&Credentials>,
    ) -> Result<Sent, SmtpError> {
        let utf8 = !mail.from.is_ascii() || mail.to.iter().any(|t| !t.is_ascii());
        if utf8 && !self.caps.smtputf8 {
            return Err(SmtpError::Unsupported {
                detail: "an address is not ASCII and the server does not offer SMTPUTF8".into(),
                need: Need::Encoding,
            });
        }
        let eight_bit = !mail.body.is_ascii();
        if eight_bit && !self.caps.eight_bit_mime {
            return Err(SmtpError::Unsupported {
                detail: "the message is not ASCII and the server does not offer 8BITMIME".into(),
                need: Need::Encoding,
            });
        }
        if let Some(creds) = auth.filter(|c| !c.pipelinable(&self.caps)) {
            // Only PLAIN may lead a flight; anything else logs in on its own first.
            self.auth(creds).await?;
            auth = None;
        }
        let caps = &self.caps;
        let mut mail_cmd = format!("MAIL FROM:<{}>", mail.from);
        if caps.size.is_some() {
            mail_cmd.push_str(&format!(" SIZE={}", mail.body.len()));
        }
        if eight_bit {
            mail_cmd.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail_cmd.push_str(" SMTPUTF8");
        }
        mail_cmd.push_str("\r\n");
        // Over the announced size: let MAIL FROM (with SIZE=) be refused before the body
        // goes out.
        let too_big = caps
            .size
            .is_some_and(|limit| mail.body.len() as u64 > limit);
        let lockstep = !caps.pipelining;

        let mut steps = Vec::with_capacity(mail.to.len() + 5);
        if self.rset_pending {
            steps.push(Step {
                stage: Stage::Rset,
                payload: Payload::Line(b"RSET\r\n".to_vec()),
                sync: lockstep,
            });
        }
        if let Some(creds) = auth {
            steps.push(Step {
                stage: Stage::Auth(Mechanism::Plain),
                payload: Payload::Line(format!("AUTH PLAIN {}\r\n", creds.plain()).into_bytes()),
                sync: false,
            });
        }
        steps.push(Step {
            stage: Stage::Mail,
            payload: Payload::Line(mail_cmd.into_bytes()),
            sync: lockstep || too_big,
        });
        for to in &mail.to {
            steps.push(Step {
                stage: Stage::Rcpt,
                payload: Payload::Line(format!("RCPT TO:<{to}>\r\n").into_bytes()),
                sync: lockstep,
            });
        }
        if caps.chunking {
            let header = format!("BDAT {} LAST\r\n", mail.body.len()).into_bytes();
            steps.push(Step {
                stage: Stage::Message,
                payload: Payload::Chunk(header, mail.body),
                sync: true,
            });
        } else {
            steps.push(Step {
                stage: Stage::Data,
                payload: Payload::Line(b"DATA\r\n".to_vec()),
                sync: true,
            });
            steps.push(Step {
                stage: Stage::Message,
                payload: Payload::Dotted(dot_stuff(mail.body), terminator(mail.body)),
                sync: true,
            });
        }
        self.run(steps, mail).await
    }

    /// Write the steps flight by flight (a flight ends at a step marked `sync`), read every
    /// reply in order, and stop once the transaction cannot succeed any more.
    async fn run(&mut self, steps: Vec<Step<'_>>, mail: &Outgoing<'_>) -> Result<Sent, SmtpError> {
        let mut tx = Transaction {
            rcpts: mail.to.len(),
            ..Transaction::default()
        };
        let mut next = 0;
        while next < steps.len() {
            let end = steps[next..]
                .iter()
                .position(|s| s.sync)
                .map_or(steps.len(), |i| next + i + 1);
            let flight = &steps[next..end];
            let mut pieces: Vec<&[u8]> = Vec::with_capacity(flight.len() + 2);
            for step in flight {
                match &step.payload {
                    Payload::Line(line) => pieces.push(line),
                    Payload::Chunk(header, body) => pieces.extend([&header[..], body]),
                    Payload::Dotted(body, dot) => pieces.extend([&body[..], dot]),
                }
            }
            let parts = coalesce(&pieces);
            let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            if let Err(broken) = self.write(flight[0].stage, &parts).await {
                // The server may have said why before it closed (e.g. 421, or 552 with a
                // too-large message): that reply explains more than the write error.
                let stage = flight[0].stage;
                return Err(match self.read_reply(stage, 0).await {
                    Ok(reply) if reply.code == 421 => SmtpError::Closing { stage, reply },
                    Ok(reply) if !reply.is_positive() => SmtpError::Refused { stage, reply },
                    _ => broken,
                });
            }
            // Positive replies so far in this flight: while none, the server took nothing
            // of it (a kept session the server was closing answers with refusals, e.g.
            // Gmail's `451 4.4.2 Timeout`, and then ends).
            let mut taken = 0;
            for step in flight {
                let reply = self.read_reply(step.stage, taken).await?;
                if reply.code == 421 {
                    // The server is closing the connection (RFC 5321 3.8): whatever it
                    // said before, nothing more comes.
                    self.broken = true;
                    let stage = step.stage;
                    return Err(if taken == 0 {
                        SmtpError::Closing { stage, reply }
                    } else {
                        SmtpError::Refused { stage, reply }
                    });
                }
                if reply.is_positive() || reply.is_intermediate() {
                    taken += 1;
                }
                if matches!(step.stage, Stage::Auth(_)) && reply.code == 334 {
                    // The server wants another SASL step and reads the rest of the flight
                    // as the answer: out of step for good.
                    self.broken = true;
                    return Err(SmtpError::Refused {
                        stage: step.stage,
                        reply,
                    });
                }
                tx.record(step.stage, mail, reply);
            }
            next = end;
            if next < steps.len() && tx.hopeless() {
                if steps[next - 1].stage == Stage::Data && tx.data_accepted {
                    // 354 although the transaction failed: sending anything now would
                    // deliver it. Dropping the connection aborts the transaction.
                    self.broken = true;
                }
                break;
            }
        }
        match tx.outcome() {
            Ok(sent) => {
                self.rset_pending = false;
                Ok(sent)
            }
            Err(e) => {
                if matches!(
                    e,
                    SmtpError::Refused {
                        stage: Stage::Auth(_),
                        ..
                    }
                ) {
                    // Not logged in: this connection is of no further use.
                    self.broken = true;
                }
                self.rset_pending = true;
                Err(e)
            }
        }
    }
}

/// The replies of one transaction, as they come in.
#[derive(Default)]
struct Transaction {
    /// How many recipients the mail has.
    rcpts: usize,
    /// The first refusal of RSET, AUTH, MAIL, DATA or the message.
    failure: Option<(Stage, Reply)>,
    accepted: usize,
    refused: Vec<(String, Reply)>,
    data_accepted: bool,
    done: Option<Reply>,
}

impl Transaction {
    fn record(&mut self, stage: Stage, mail: &Outgoing<'_>, reply: Reply) {
        match stage {
            Stage::Rcpt => {
                if reply.is_positive() {
                    self.accepted += 1;
                } else {
                    let to = mail
                        .to
                        .get(self.accepted + self.refused.len())
                        .cloned()
                        .unwrap_or_default();
                    self.refused.push((to, reply));
                }
            }
            Stage::Data if reply.code == 354 => self.data_accepted = true,
            Stage::Message if reply.is_positive() => self.done = Some(reply),
            // Anything but 354 to DATA, even a 2xx, means no message may follow.
            Stage::Data | Stage::Message => {
                if self.failure.is_none() {
                    self.failure = Some((stage, reply));
                }
            }
            _ if reply.is_positive() => {}
            _ => {
                if self.failure.is_none() {
                    self.failure = Some((stage, reply));
                }
            }
        }
    }

    /// Nothing can be delivered any more: a command before the recipients was refused, or
    /// every recipient was.
    fn hopeless(&self) -> bool {
        self.failure.is_some() || self.refused_all()
    }

    fn refused_all(&self) -> bool {
        self.accepted == 0 && self.refused.len() == self.rcpts && self.rcpts > 0
    }

    fn outcome(self) -> Result<Sent, SmtpError> {
        let refused_all = self.refused_all();
        // The first failure in the order of the dialogue: RSET, AUTH and MAIL come before
        // the recipients, DATA and the message after them.
        let early = self
            .failure
            .as_ref()
            .is_some_and(|(stage, _)| matches!(stage, Stage::Rset | Stage::Auth(_) | Stage::Mail));
        if early {
            let (stage, reply) = self.failure.expect("checked");
            return Err(SmtpError::Refused { stage, reply });
        }
        if refused_all {
            let (_, reply) = self.refused.into_iter().next().expect("checked");
            return Err(SmtpError::Refused {
                stage: Stage::Rcpt,
                reply,
            });
        }
        if let Some((stage, reply)) = self.failure {
            return Err(SmtpError::Refused { stage, reply });
        }
        match self.done {
            Some(reply) => Ok(Sent {
                reply,
                refused: self.refused,
            }),
            None => Err(SmtpError::Broken {
                stage: Stage::Message,
                detail: "the transaction ended without an answer to the message".into(),
                answered: 1,
            }),
        }
    }
}

/// Pieces shorter than this are copied together, so a flight's commands (and a small
/// message) leave in one write: on TLS every write is a record and a TCP segment of its own.
const COALESCE: usize = 16 * 1024;

/// The pieces of a flight as few writes: small ones joined, large ones (message bodies)
/// borrowed.
fn coalesce<'a>(pieces: &[&'a [u8]]) -> Vec<Cow<'a, [u8]>> {
    let mut out = Vec::new();
    let mut joined: Vec<u8> = Vec::new();
    for &piece in pieces {
        if piece.len() < COALESCE {
            joined.extend_from_slice(piece);
        } else {
            if !joined.is_empty() {
                out.push(Cow::Owned(std::mem::take(&mut joined)));
            }
            out.push(Cow::Borrowed(piece));
        }
    }
    if !joined.is_empty() {
        out.push(Cow::Owned(joined));
    }
    out
}

/// The message with every line that starts with a dot given a second one (RFC 5321
/// 4.5.2), borrowed when there is none.
pub fn dot_stuff(body: &[u8]) -> Cow<'_, [u8]> {
    let starts = |i: usize| body[i] == b'.' && (i == 0 || body[i - 1] == b'\n');
    let count = (0..body.len()).filter(|&i| starts(i)).count();
    if count == 0 {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + count);
    let mut from = 0;
    for i in (0..body.len()).filter(|&i| starts(i)) {
        out.extend_from_slice(&body[from..i]);
        out.push(b'.');
        from = i;
    }
    out.extend_from_slice(&body[from..]);
    Cow::Owned(out)
}

/// What ends a DATA message: the dot on a line of its own.
pub fn terminator(body: &[u8]) -> &'static [u8] {
    if body.is_empty() || body.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    }
}

/// Cut credentials out of a reply that echoes them.
fn redact(mut e: SmtpError, forms: &[String]) -> SmtpError {
    if let SmtpError::Refused { reply, .. } | SmtpError::Closing { reply, .. } = &mut e {
        for line in &mut reply.lines {
            for form in forms.iter().filter(|f| !f.is_empty()) {
                if line.contains(form.as_str()) {
                    *line = line.replace(form.as_str(), "[redacted]");
                }
            }
        }
    }
    e
}

fn chain(e: &io::Error) -> String {
    crate::errors::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    /// The server's end of an in-memory connection, driven by the test.
    struct Script {
        io: BufReader<DuplexStream>,
    }

    impl Script {
        /// Exactly `want` bytes, which must all arrive without the client waiting for a
        /// reply in between: a client that waits mid-flight never sends the rest.
        async fn expect(&mut self, want: &[u8]) {
            let mut got = vec![0u8; want.len()];
            tokio::time::timeout(Duration::from_secs(5), self.io.read_exact(&mut got))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the client did not send the whole flight; wanted {:?}",
                        String::from_utf8_lossy(want)
                    )
                })
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "flight"
            );
        }

        async fn say(&mut self, text: &str) {
            self.io.get_mut().write_all(text.as_bytes()).await.unwrap();
        }

        /// Nothing more arrives (the client has stopped writing and closed or waits).
        async fn nothing_more(&mut self) {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_millis(200), self.io.read_line(&mut line))
                .await
                .map(|r| r.unwrap())
                .unwrap_or(0);
            assert_eq!(n, 0, "unexpected {line:?}");
        }
    }

    fn pair(caps: Capabilities) -> (Conn<DuplexStream>, Script) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(client);
        conn.caps = caps;
        (
            conn,
            Script {
                io: BufReader::new(server),
            },
        )
    }

    fn gmail() -> Capabilities {
        Capabilities {
            pipelining: true,
            chunking: true,
            eight_bit_mime: true,
            smtputf8: true,
            size: Some(35_882_577),
            auth: vec!["LOGIN".into(), "PLAIN".into(), "XOAUTH2".into()],
            starttls: false,
        }
    }

    /// Gmail's extensions but CHUNKING: the message goes with DATA.
    fn no_chunking() -> Capabilities {
        Capabilities {
            chunking: false,
            ..gmail()
        }
    }

    fn password() -> Credentials {
        Credentials {
            username: "cam@example.com".into(),
            secret: Secret::new("abcdefghijklmnop"),
            xoauth2: false,
        }
    }

    const BODY: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";

    fn mail<'a>(to: &[&str], body: &'a [u8]) -> Outgoing<'a> {
        Outgoing {
            from: "cam@example.com".into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            body,
        }
    }

    /// `conn` sends one mail from cam@example.com to `to` in a task; the task hands back the
    /// result and the connection.
    fn sending(
        mut conn: Conn<DuplexStream>,
        to: &'static [&'static str],
        body: &'static [u8],
        auth: Option<Credentials>,
    ) -> tokio::task::JoinHandle<(Result<Sent, SmtpError>, Conn<DuplexStream>)> {
        tokio::spawn(async move {
            let m = mail(to, body);
            (conn.send(&m, auth.as_ref()).await, conn)
        })
    }

    #[tokio::test]
    async fn mail_rcpt_and_bdat_go_out_in_one_flight() {
        let (conn, mut server) = pair(gmail());
        let client = sending(conn, &["a@example.com", "b@example.com"], BODY, None);
        let flight = format!(
            "MAIL FROM:<cam@example.com> SIZE={n}\r\nRCPT TO:<a@example.com>\r\n\
             RCPT TO:<b@example.com>\r\nBDAT {n} LAST\r\n",
            n = BODY.len()
        );
        server.expect(&[flight.as_bytes(), BODY].concat()).await;
        server
            .say("250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n250 2.0.0 OK 17 x - gsmtp\r\n")
            .await;
        let (sent, conn) = client.await.unwrap();
        let sent = sent.unwrap();
        assert_eq!(sent.reply.code, 250);
        assert!(sent.refused.is_empty());
        assert!(conn.is_usable() && !conn.rset_pending);
    }

    #[tokio::test]
    async fn auth_plain_leads_the_flight_when_pipelining() {
        let (conn, mut server) = pair(gmail());
        let creds = password();
        let plain = creds.plain();
        let client = sending(conn, &["a@example.com"], BODY, Some(creds));
        let flight = format!(
            "AUTH PLAIN {plain}\r\nMAIL FROM:<cam@example.com> SIZE={n}\r\n\
             RCPT TO:<a@example.com>\r\nBDAT {n} LAST\r\n",
            n = BODY.len()
        );
        server.expect(&[flight.as_bytes(), BODY].concat()).await;
        server
            .say("235 2.7.0 Accepted\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.0.0 OK\r\n")
            .await;
        let (sent, _) = client.await.unwrap();
        assert_eq!(sent.unwrap().reply.code, 250);
    }

    #[tokio::test]
    async fn a_refused_login_in_the_flight_is_the_failure_and_ends_the_connection() {
        let (conn, mut server) = pair(gmail());
        let creds = password();
        let client = sending(conn, &["a@example.com"], BODY, Some(creds));
        server.io.fill_buf().await.unwrap();
        server
            .say(
                "535-5.7.8 Username and Password not accepted. For more information, go to\r\n\
                 535 5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp\r\n\
                 530-5.7.0 Authentication Required.\r\n530 5.7.0 more\r\n\
                 503 5.5.1 MAIL first.\r\n503 5.5.1 RCPT first.\r\n",
            )
            .await;
        let (err, conn) = client.await.unwrap();
        match err.unwrap_err() {
            SmtpError::Refused { stage, reply } => {
                assert_eq!(stage, Stage::Auth(Mechanism::Plain));
                assert_eq!(
                    (reply.code, reply.enhanced().as_deref()),
                    (535, Some("5.7.8"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!conn.is_usable(), "a refused login is not reused");
    }

    #[tokio::test]
    async fn a_refused_mail_from_is_read_to_the_end_and_the_next_flight_starts_with_rset() {
        let (mut conn, mut server) = pair(gmail());
        let client = tokio::spawn(async move {
            let m = mail(&["a@example.com"], BODY);
            let first = conn.send(&m, None).await;
            let second = conn.send(&m, None).await;
            (first, second)
        });
        server.io.fill_buf().await.unwrap();
        server
            .say(
                "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n\
                 550-5.4.5 sending limits go to\r\n550 5.4.5  https://support.google.com/a/answer/166852 x - gsmtp\r\n\
                 503 5.5.1 MAIL first.\r\n503 5.5.1 RCPT first.\r\n",
            )
            .await;
        // The first flight is consumed whole; the next starts with RSET.
        let first = format!(
            "MAIL FROM:<cam@example.com> SIZE={n}\r\nRCPT TO:<a@example.com>\r\nBDAT {n} LAST\r\n",
            n = BODY.len()
        );
        server.expect(&[first.as_bytes(), BODY].concat()).await;
        server
            .expect(&[b"RSET\r\n", first.as_bytes(), BODY].concat())
            .await;
        server
            .say("250 2.1.5 Flushed\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.0.0 OK\r\n")
            .await;
        let (first, second) = client.await.unwrap();
        match first.unwrap_err() {
            SmtpError::Refused { stage, reply } => {
                assert_eq!(stage, Stage::Mail);
                assert_eq!(reply.code, 550);
                assert_eq!(reply.enhanced().as_deref(), Some("5.4.5"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(second.unwrap().reply.code, 250);
    }

    #[tokio::test]
    async fn some_recipients_refused_the_others_get_it() {
        let (conn, mut server) = pair(gmail());
        let client = sending(
            conn,
            &["a@example.com", "b@example.com", "c@example.com"],
            BODY,
            None,
        );
        server.io.fill_buf().await.unwrap();
        server
            .say(
                "250 2.1.0 OK\r\n250 2.1.5 OK\r\n452 4.5.3 Your message has too many recipients.\r\n\
                 250 2.1.5 OK\r\n250 2.0.0 OK\r\n",
            )
            .await;
        let sent = client.await.unwrap().0.unwrap();
        assert_eq!(sent.reply.code, 250);
        assert_eq!(sent.refused.len(), 1);
        assert_eq!(sent.refused[0].0, "b@example.com");
        assert_eq!(sent.refused[0].1.code, 452);
    }

    #[tokio::test]
    async fn every_recipient_refused_reports_the_first_refusal_not_the_bdat_reply() {
        let (conn, mut server) = pair(gmail());
        let client = sending(conn, &["a@example.com", "b@example.com"], BODY, None);
        server.io.fill_buf().await.unwrap();
        server
            .say(
                "250 2.1.0 OK\r\n550 5.1.1 no such user a\r\n550 5.1.2 bad domain b\r\n\
                 554 5.5.1 no valid recipients\r\n",
            )
            .await;
        let (err, conn) = client.await.unwrap();
        match err.unwrap_err() {
            SmtpError::Refused { stage, reply } => {
                assert_eq!(stage, Stage::Rcpt);
                assert_eq!(reply.text(), "5.1.1 no such user a");
            }
            other => panic!("{other:?}"),
        }
        assert!(conn.is_usable() && conn.rset_pending);
    }

    #[tokio::test]
    async fn without_chunking_data_waits_for_354_and_the_message_is_dot_stuffed() {
        let (conn, mut server) = pair(no_chunking());
        let body: &'static [u8] = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nend";
        let client = sending(conn, &["a@example.com"], body, None);
        let n = body.len();
        server
            .expect(
                format!(
                    "MAIL FROM:<cam@example.com> SIZE={n}\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
                )
                .as_bytes(),
            )
            .await;
        // Nothing of the message before 354.
        let mut peek = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), server.io.read(&mut peek))
                .await
                .is_err(),
            "the message went out before 354"
        );
        server
            .say("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354  Go ahead\r\n")
            .await;
        server
            .expect(b"Subject: x\r\n\r\n..leading dot\r\n...two\r\nend\r\n.\r\n")
            .await;
        server.say("250 2.0.0 OK\r\n").await;
        assert_eq!(client.await.unwrap().0.unwrap().reply.code, 250);
    }

    #[tokio::test]
    async fn without_pipelining_every_command_waits_for_its_reply() {
        let caps = Capabilities {
            pipelining: false,
            chunking: false,
            ..gmail()
        };
        let (conn, mut server) = pair(caps);
        let client = sending(conn, &["a@example.com", "b@example.com"], BODY, None);
        let n = BODY.len();
        server
            .expect(format!("MAIL FROM:<cam@example.com> SIZE={n}\r\n").as_bytes())
            .await;
        server.nothing_more().await;
        server.say("250 2.1.0 OK\r\n").await;
        server.expect(b"RCPT TO:<a@example.com>\r\n").await;
        server.nothing_more().await;
        server.say("250 2.1.5 OK\r\n").await;
        server.expect(b"RCPT TO:<b@example.com>\r\n").await;
        server.say("250 2.1.5 OK\r\n").await;
        server.expect(b"DATA\r\n").await;
        server.say("354 go\r\n").await;
        server.expect(&[BODY, b".\r\n"].concat()).await;
        server.say("250 2.0.0 OK\r\n").await;
        assert_eq!(client.await.unwrap().0.unwrap().reply.code, 250);
    }

    #[tokio::test]
    async fn a_refused_data_is_not_followed_by_the_message() {
        let (conn, mut server) = pair(no_chunking());
        let client = sending(conn, &["a@example.com"], BODY, None);
        server.io.fill_buf().await.unwrap();
        server
            .say("550 5.4.5 Daily user sending limit exceeded.\r\n503 5.5.1 MAIL first\r\n503 5.5.1 RCPT first\r\n")
            .await;
        let (res, conn) = client.await.unwrap();
        assert!(matches!(
            res.unwrap_err(),
            SmtpError::Refused {
                stage: Stage::Mail,
                ..
            }
        ));
        assert!(conn.is_usable());
        let mut rest = Vec::new();
        drop(conn);
        server.io.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.ends_with("DATA\r\n"), "{rest:?}");
    }

    #[tokio::test]
    async fn a_354_after_refused_recipients_drops_the_connection_instead_of_delivering() {
        let (conn, mut server) = pair(no_chunking());
        let client = sending(conn, &["a@example.com"], BODY, None);
        server.io.fill_buf().await.unwrap();
        server
            .say("250 2.1.0 OK\r\n550 5.1.1 no such user\r\n354 go ahead anyway\r\n")
            .await;
        let (res, conn) = client.await.unwrap();
        assert!(matches!(
            res.unwrap_err(),
            SmtpError::Refused {
                stage: Stage::Rcpt,
                ..
            }
        ));
        assert!(!conn.is_usable(), "the transaction is aborted by closing");
    }

    #[tokio::test]
    async fn over_the_announced_size_mail_from_goes_alone_first() {
        let caps = Capabilities {
            size: Some(10),
            ..gmail()
        };
        let (conn, mut server) = pair(caps);
        let client = sending(conn, &["a@example.com"], BODY, None);
        server
            .expect(format!("MAIL FROM:<cam@example.com> SIZE={}\r\n", BODY.len()).as_bytes())
            .await;
        server.nothing_more().await;
        server
            .say("552 5.3.4 Message size exceeds fixed maximum message size.\r\n")
            .await;
        match client.await.unwrap().0.unwrap_err() {
            SmtpError::Refused { stage, reply } => {
                assert_eq!(stage, Stage::Mail);
                assert_eq!(reply.code, 552);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_dead_connection_before_any_reply_is_stale() {
        let (mut conn, server) = pair(gmail());
        drop(server);
        let m = mail(&["a@example.com"], BODY);
        let err = conn.send(&m, None).await.unwrap_err();
        assert!(err.is_stale(), "{err:?}");
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn a_421_first_is_stale_a_421_later_is_a_refusal() {
        for (replies, stale) in [
            ("421 4.4.2 Timeout - closing connection.\r\n", true),
            ("250 2.1.0 OK\r\n250 2.1.5 OK\r\n421 4.7.0 Try again later, closing connection.\r\n", false),
        ] {
            let (conn, mut server) = pair(gmail());
            let client = sending(conn, &["a@example.com"], BODY, None);
            server.io.fill_buf().await.unwrap();
            server.say(replies).await;
            let (res, conn) = client.await.unwrap();
            let err = res.unwrap_err();
            assert_eq!(err.is_stale(), stale, "{err:?}");
            assert!(!conn.is_usable(), "the server is closing it");
        }
    }

    #[tokio::test]
    async fn refusals_then_a_closed_connection_are_stale() {
        let (conn, mut server) = pair(gmail());
        let client = sending(conn, &["a@example.com"], BODY, None);
        server.io.fill_buf().await.unwrap();
        server
            .say("451 4.4.2 Timeout - closing connection.\r\n")
            .await;
        drop(server);
        let err = client.await.unwrap().0.unwrap_err();
        assert!(err.is_stale(), "{err:?}");
    }

    #[tokio::test]
    async fn a_connection_lost_mid_flight_is_not_stale() {
        let (conn, mut server) = pair(gmail());
        let client = sending(conn, &["a@example.com"], BODY, None);
        server.io.fill_buf().await.unwrap();
        server.say("250 2.1.0 OK\r\n").await;
        drop(server);
        let err = client.await.unwrap().0.unwrap_err();
        assert!(!err.is_stale(), "{err:?}");
        assert!(matches!(err, SmtpError::Broken { answered: 1, .. }));
    }

    #[tokio::test]
    async fn an_unsolicited_close_is_seen_without_waiting() {
        let (mut conn, mut server) = pair(gmail());
        assert!(!conn.is_stale());
        server
            .say("421 4.4.2 Timeout - closing connection.\r\n")
            .await;
        tokio::task::yield_now().await;
        assert!(conn.is_stale());
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn xoauth2_refusal_answers_the_challenge_and_reports_the_final_reply() {
        let (mut conn, mut server) = pair(gmail());
        let creds = Credentials {
            username: "cam@example.com".into(),
            secret: Secret::new("ya29.stale"),
            xoauth2: true,
        };
        let expected = creds.xoauth2_response();
        let client = tokio::spawn(async move { conn.auth(&creds).await });
        server
            .expect(format!("AUTH XOAUTH2 {expected}\r\n").as_bytes())
            .await;
        server
            .say("334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=\r\n")
            .await;
        server.expect(b"\r\n").await;
        server
            .say("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 x - gsmtp\r\n")
            .await;
        match client.await.unwrap().unwrap_err() {
            SmtpError::Refused { stage, reply } => {
                assert_eq!(stage, Stage::Auth(Mechanism::XOAuth2));
                assert_eq!(reply.code, 535);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn auth_login_is_the_fallback_and_echoed_secrets_are_cut_out() {
        let caps = Capabilities {
            auth: vec!["LOGIN".into()],
            ..gmail()
        };
        let (mut conn, mut server) = pair(caps);
        let creds = password();
        assert!(!creds.pipelinable(&conn.caps), "LOGIN is never pipelined");
        let client = tokio::spawn(async move { conn.auth(&creds).await });
        server.expect(b"AUTH LOGIN\r\n").await;
        server.say("334 VXNlcm5hbWU6\r\n").await;
        let user = B64.encode("cam@example.com");
        server.expect(format!("{user}\r\n").as_bytes()).await;
        server.say("334 UGFzc3dvcmQ6\r\n").await;
        let pass = B64.encode("abcdefghijklmnop");
        server.expect(format!("{pass}\r\n").as_bytes()).await;
        server
            .say(&format!(
                "535 5.7.8 bad password {pass} (abcdefghijklmnop)\r\n"
            ))
            .await;
        let err = client.await.unwrap().unwrap_err();
        let text = format!("{err:?}");
        assert!(
            !text.contains(&pass) && !text.contains("abcdefghijklmnop"),
            "{text}"
        );
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[tokio::test]
    async fn a_pipelined_auth_that_asks_for_more_breaks_the_connection() {
        let (conn, mut server) = pair(gmail());
        let creds = password();
        let client = sending(conn, &["a@example.com"], BODY, Some(creds));
        server.io.fill_buf().await.unwrap();
        server.say("334 \r\n").await;
        let (res, conn) = client.await.unwrap();
        assert!(res.is_err());
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn no_usable_login_method_is_a_login_problem() {
        let caps = Capabilities {
            auth: vec!["CRAM-MD5".into()],
            ..gmail()
        };
        let (mut conn, _server) = pair(caps);
        match conn.auth(&password()).await.unwrap_err() {
            SmtpError::Unsupported { detail, need } => {
                assert_eq!(need, Need::Login);
                assert!(detail.contains("CRAM-MD5"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn starttls_refuses_data_pushed_after_the_220() {
        let caps = Capabilities {
            starttls: true,
            ..gmail()
        };
        let (mut conn, mut server) = pair(caps);
        let client = tokio::spawn(async move { conn.starttls().await });
        server.expect(b"STARTTLS\r\n").await;
        server
            .say("220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
            .await;
        assert!(matches!(
            client.await.unwrap().unwrap_err(),
            SmtpError::Broken {
                stage: Stage::StartTls,
                ..
            }
        ));
    }

    #[test]
    fn a_flight_is_written_in_as_few_pieces_as_its_large_parts_allow() {
        let big = vec![b'x'; COALESCE];
        let parts = coalesce(&[b"MAIL\r\n", b"RCPT\r\n", b"BDAT 3 LAST\r\n", b"abc"]);
        assert_eq!(parts.len(), 1);
        assert_eq!(&*parts[0], b"MAIL\r\nRCPT\r\nBDAT 3 LAST\r\nabc");
        let parts = coalesce(&[b"MAIL\r\n", b"BDAT\r\n", &big, b".\r\n"]);
        assert_eq!(parts.len(), 3);
        assert!(
            matches!(parts[1], Cow::Borrowed(_)),
            "the body is not copied"
        );
        assert_eq!(&*parts[2], b".\r\n");
    }

    #[test]
    fn dot_stuffing() {
        assert!(matches!(dot_stuff(b"no dots here\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*dot_stuff(b"."), b"..");
        assert_eq!(
            &*dot_stuff(b"a.b\r\n.c\r\n..d\n.e"),
            b"a.b\r\n..c\r\n...d\n..e"
        );
        assert_eq!(&*dot_stuff(b".\r\n"), b"..\r\n");
        assert_eq!(terminator(b"x\r\n"), b".\r\n");
        assert_eq!(terminator(b"x"), b"\r\n.\r\n");
        assert_eq!(terminator(b""), b".\r\n");
    }
}
