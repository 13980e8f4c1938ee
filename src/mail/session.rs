//! SMTP sessions: connect (TCP with Nagle's algorithm off, then implicit TLS or STARTTLS),
//! EHLO and AUTH, and a small pool of logged-in sessions that later mails reuse.
//!
//! Why not lettre's pooled transport: it opens its sockets itself and leaves Nagle on, and
//! lettre writes a message body and its closing `.` in two writes. The second write then
//! waits until the server acknowledges the first, and a server with nothing to say yet
//! holds that acknowledgement for its delayed-ACK timer (40 ms on Linux): every mail paid
//! it. Here the socket is ours (`TCP_NODELAY`) and lettre's `AsyncSmtpConnection` speaks
//! SMTP over it, so the protocol code is still lettre's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::classify::{classify, Class, Failure, HINT_CERTIFICATE, HINT_CONNECT, HINT_TLS};
use crate::config::Security;

/// Sessions idle longer than this are closed rather than reused (servers drop idle
/// clients after a few minutes; Gmail's limit is not published).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A session idle longer than this is checked with NOOP before it carries a mail, so a
/// connection the server has quietly closed costs a reconnect, not a failed send.
const CHECK_AFTER: Duration = Duration::from_secs(5);

/// How to reach and greet the server.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// lettre's TLS settings, for STARTTLS.
    pub starttls: TlsParameters,
    /// Our own TLS settings, for implicit TLS (lettre only does that on its own sockets).
    pub implicit: Arc<rustls::ClientConfig>,
}

/// Logged-in sessions waiting for the next mail.
pub struct Sessions {
    endpoint: Endpoint,
    hello: ClientId,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
    /// Which login the session was authenticated with (XOAUTH2 tokens change).
    login: u64,
}

/// One login: credentials, mechanisms, and a number that changes when they do.
pub struct Login {
    pub credentials: Credentials,
    pub mechanisms: &'static [Mechanism],
    pub generation: u64,
}

impl Sessions {
    pub fn new(endpoint: Endpoint) -> Sessions {
        Sessions {
            endpoint,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send one message on a pooled session (or a new one).
    pub async fn send(
        &self,
        login: &Login,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<Response, Failure> {
        let mut conn = self.checkout(login).await?;
        let sent = conn.send(envelope, bytes).await.map_err(|e| classify(&e));
        self.checkin(conn, login);
        sent
    }

    /// Connect and log in (or find a live pooled session) without sending anything.
    pub async fn test(&self, login: &Login) -> Result<(), Failure> {
        let conn = self.checkout(login).await?;
        self.checkin(conn, login);
        Ok(())
    }

    async fn checkout(&self, login: &Login) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.pop()
            };
            let Some(mut s) = candidate else { break };
            if s.login != login.generation || s.since.elapsed() > IDLE_TIMEOUT {
                quit(s.conn);
                continue;
            }
            if s.since.elapsed() <= CHECK_AFTER || s.conn.test_connected().await {
                return Ok(s.conn);
            }
        }
        self.connect(login).await
    }

    fn checkin(&self, conn: AsyncSmtpConnection, login: &Login) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(Idle {
            conn,
            since: Instant::now(),
            login: login.generation,
        });
    }

    /// TCP, TLS, greeting, EHLO (again after STARTTLS), AUTH.
    async fn connect(&self, login: &Login) -> Result<AsyncSmtpConnection, Failure> {
        let e = &self.endpoint;
        let tcp = tcp_connect(&e.host, e.port).await?;
        let mut conn = match e.security {
            Security::Tls => {
                let name = rustls::pki_types::ServerName::try_from(e.host.clone())
                    .map_err(|err| tls_failure(format!("smtp.host {:?}: {err}", e.host)))?;
                let tls = tokio_rustls::TlsConnector::from(e.implicit.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|err| tls_failure(crate::errors::error_chain(&err)))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(TlsTcp(tls)), &self.hello)
                    .await
                    .map_err(|err| classify(&err))?
            }
            Security::Starttls => {
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(|err| classify(&err))?;
                conn.starttls(e.starttls.clone(), &self.hello)
                    .await
                    .map_err(|err| classify(&err))?;
                conn
            }
        };
        conn.auth(login.mechanisms, &login.credentials)
            .await
            .map_err(|err| classify(&err))?;
        Ok(conn)
    }
}

/// Close a session politely in the background (QUIT), without holding up a send.
fn quit(mut conn: AsyncSmtpConnection) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        });
    }
}

async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| connect_failure(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // See the module docs: without this every mail waits for a delayed ACK.
                tcp.set_nodelay(true)
                    .map_err(|e| connect_failure(format!("{addr}: {e}")))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(connect_failure(last.unwrap_or_else(|| {
        format!("{host} resolved to no address")
    })))
}

fn connect_failure(detail: String) -> Failure {
    Failure {
        class: Class::Transient,
        code: None,
        enhanced: None,
        detail,
        hint: HINT_CONNECT,
    }
}

fn tls_failure(detail: String) -> Failure {
    Failure {
        class: Class::Transient,
        code: None,
        enhanced: None,
        // rustls' certificate verdicts say "certificate" (e.g. "invalid peer certificate:
        // UnknownIssuer"); everything else is a handshake problem.
        hint: if detail.contains("certificate") {
            HINT_CERTIFICATE
        } else {
            HINT_TLS
        },
        detail,
    }
}

/// An implicit-TLS socket in the shape lettre's connection accepts.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}
