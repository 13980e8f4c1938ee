//! SMTP sessions: opening them (TCP with Nagle's algorithm off, implicit TLS or STARTTLS,
//! EHLO, AUTH), keeping them, and handing them to sends.
//!
//! **Round trips.** Each wait for the server costs one round trip, tens of milliseconds to
//! Gmail. Opening over STARTTLS costs six (TCP, greeting, EHLO, STARTTLS, TLS 1.3, EHLO),
//! over implicit TLS four (TCP, TLS, greeting, EHLO). AUTH PLAIN then goes out with the
//! first mail ([`super::wire`]), so a mail on a new session costs one more and a mail on a
//! kept session costs one. Every wait is counted at the socket ([`Sessions::round_trips`]).
//!
//! **Opening ahead.** [`Sessions::reserve`] + [`Sessions::open_reserved`] open a session
//! before the mail exists (the pipeline asks when an event is going to be mailed, while its
//! picture is fetched). A send that finds no idle session takes over one being opened
//! instead of opening another; at most `smtp.max_connections` sessions exist at once.
//! After a failed opening, no more are opened ahead until a send succeeds, so a wrong
//! password or a dead server costs what the outbox's retries cost, and no more.
//!
//! **Idle sessions.** A NOOP on a kept session before each mail would cost a round trip on
//! every warm send. Instead: one session is kept for [`KEEP_FOR`] after its last mail,
//! with a NOOP every [`KEEPALIVE`] off the send path (servers close idle sessions after a
//! few minutes; RFC 5321 suggests 5); further idle sessions close after one
//! keep-alive interval.
//! Before a kept session is used, the socket is looked at without waiting: a server that
//! closed it (or announced `421 … closing`) is seen at no cost. If a kept session still
//! turns out dead before the server has answered any of the mail's flight (or answers
//! `421`), nothing was accepted: the mail goes out on a new session within the same
//! attempt.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::classify::{connect_failure, smtp_failure, tls_failure, Class, Failure};
use super::wire::{Conn, Credentials, Outgoing, Sent, SmtpError};
use crate::config::Security;

/// How idle sessions are kept; see the module docs. The defaults are the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// A NOOP keeps an idle session open this often (and extra idle sessions close).
    pub keepalive: Duration,
    /// How long after its last mail one session is kept open.
    pub keep_for: Duration,
}

impl Default for IdlePolicy {
    fn default() -> IdlePolicy {
        IdlePolicy {
            keepalive: Duration::from_secs(60),
            keep_for: Duration::from_secs(10 * 60),
        }
    }
}
/// Bound on a keep-alive NOOP.
const NOOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on QUIT when closing a session nobody needs.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach and greet the server.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Web PKI roots plus `smtp.ca_file`; for implicit TLS and STARTTLS alike.
    pub tls: Arc<rustls::ClientConfig>,
}

/// What the pool holds at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Sessions waiting for a mail.
    pub idle: usize,
    /// Sessions being opened or keep-alive checked.
    pub pending: usize,
    /// Sessions carrying a mail.
    pub busy: usize,
    /// Whether sessions are opened ahead (false after a failed opening, until a send
    /// succeeds).
    pub opening_ahead: bool,
}

/// One login: credentials, and a number that changes when they do (XOAUTH2 tokens).
pub struct Login {
    pub credentials: Credentials,
    pub generation: u64,
}

/// A connection ready for mail.
struct Session {
    conn: Conn<Stream>,
    /// The login generation it authenticated with; `None`: not logged in yet (AUTH PLAIN
    /// goes out with its first mail).
    authed: Option<u64>,
    /// When it last carried a mail, or was opened.
    used: Instant,
    id: u64,
}

impl Session {
    fn fits(&self, login: &Login) -> bool {
        self.authed.is_none_or(|g| g == login.generation)
    }
}

/// Logged-in (or ready to log in) sessions, shared by every send of one mailer.
pub struct Sessions {
    endpoint: Endpoint,
    max: usize,
    timeout: Duration,
    idle: IdlePolicy,
    state: Mutex<State>,
    trips: Arc<AtomicU64>,
    me: Weak<Sessions>,
}

#[derive(Default)]
struct State {
    idle: Vec<Session>,
    /// Sessions being opened, or checked with a keep-alive NOOP; a send may claim one.
    pending: Vec<Pending>,
    /// Sessions carrying a mail (or claimed and waited for).
    busy: usize,
    /// The last opening failed: open nothing ahead until a send succeeds.
    unhealthy: bool,
    next_id: u64,
}

struct Pending {
    id: u64,
    /// The login generation it will have; `None`: any (not logged in, or not known yet).
    generation: Option<u64>,
    claim: Option<oneshot::Sender<Handover>>,
}

/// What a claimed pending session turned into.
enum Handover {
    Ready(Session),
    /// The opening failed: that is the claimant's failure too.
    Failed(Failure),
    /// The kept session did not answer its keep-alive: open another.
    Gone,
}

/// A session checked out for one send; `busy` counts it until dropped.
struct Checkout<'a> {
    pool: &'a Sessions,
    session: Option<Session>,
    /// It had been idle: it may have died unnoticed.
    reused: bool,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.busy = st.busy.saturating_sub(1);
        if let Some(s) = self.session.take() {
            self.pool.keep(&mut st, s);
        }
    }
}

impl Sessions {
    pub fn new(
        endpoint: Endpoint,
        max: usize,
        timeout: Duration,
        idle: IdlePolicy,
    ) -> Arc<Sessions> {
        Arc::new_cyclic(|me| Sessions {
            endpoint,
            max: max.max(1),
            timeout,
            idle,
            state: Mutex::new(State::default()),
            trips: Arc::new(AtomicU64::new(0)),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Round trips spent so far on every session: each time a session waited for the
    /// server after sending something, each TCP connect, and each greeting.
    pub fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> PoolStatus {
        let st = self.lock();
        PoolStatus {
            idle: st.idle.len(),
            pending: st.pending.len(),
            busy: st.busy,
            opening_ahead: !st.unhealthy,
        }
    }

    /// Reserve the opening of a session ahead of a mail, if none is idle or being opened,
    /// there is room under `smtp.max_connections`, and the last opening did not fail.
    /// Cheap and non-blocking; follow with [`Sessions::open_reserved`].
    pub fn reserve(&self) -> Option<u64> {
        let mut st = self.lock();
        if st.unhealthy {
            return None;
        }
        st.idle.retain_mut(|s| !s.conn.is_stale());
        let unclaimed = st.pending.iter().filter(|p| p.claim.is_none()).count();
        if !st.idle.is_empty() || unclaimed > 0 {
            return None;
        }
        if st.idle.len() + st.pending.len() + st.busy >= self.max {
            return None;
        }
        st.next_id += 1;
        let id = st.next_id;
        st.pending.push(Pending {
            id,
            generation: None,
            claim: None,
        });
        Some(id)
    }

    /// Open the session reserved as `id` (with `login`, or fail with the failure to get
    /// one) and hand it to the send that claimed it, else keep it idle.
    pub async fn open_reserved(&self, id: u64, login: Result<Login, Failure>) {
        let opened = match login {
            Ok(login) => {
                {
                    let mut st = self.lock();
                    if let Some(p) = st.pending.iter_mut().find(|p| p.id == id) {
                        p.generation = Some(login.generation);
                    }
                }
                self.open_within(&login).await
            }
            Err(f) => Err(f),
        };
        let mut st = self.lock();
        let Some(i) = st.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let pending = st.pending.remove(i);
        if opened.is_err() {
            st.unhealthy = true;
        }
        let handover = match opened {
            Ok(mut s) => {
                s.id = id;
                Handover::Ready(s)
            }
            Err(f) => Handover::Failed(f),
        };
        let unclaimed = match pending.claim {
            Some(tx) => match tx.send(handover) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => handover,
        };
        match unclaimed {
            Handover::Ready(s) => self.keep(&mut st, s),
            Handover::Failed(f) => {
                drop(st);
                warn!("smtp: could not open a session ahead of the next mail: {f}");
            }
            Handover::Gone => {}
        }
    }

    /// Send one message on an idle session, one being opened, or a new one.
    pub async fn send(&self, login: &Login, mail: &Outgoing<'_>) -> Result<Sent, Failure> {
        let mut co = self.checkout(login).await?;
        let mut result = self.send_on(&mut co, login, mail).await;
        if let Err(e) = &result {
            if co.reused && e.is_stale() {
                debug!(
                    "smtp: the kept session was closed by the server ({e:?}); sending on a new one"
                );
                co.session = None;
                co.reused = false;
                co.session = Some(self.open_within(login).await.inspect_err(|_| {
                    self.lock().unhealthy = true;
                })?);
                result = self.send_on(&mut co, login, mail).await;
            }
        }
        let failure = result.map_err(|e| smtp_failure(&e));
        match &failure {
            Ok(_) => self.lock().unhealthy = false,
            Err(f) if f.class == Class::Credentials => self.lock().unhealthy = true,
            Err(_) => {}
        }
        failure
    }

    async fn send_on(
        &self,
        co: &mut Checkout<'_>,
        login: &Login,
        mail: &Outgoing<'_>,
    ) -> Result<Sent, SmtpError> {
        let s = co.session.as_mut().expect("checked out");
        let auth = s.authed.is_none().then_some(&login.credentials);
        let result = s.conn.send(mail, auth).await;
        if s.conn.is_usable() {
            // A refused login ends the connection: a usable one is logged in.
            s.authed = Some(login.generation);
            s.used = Instant::now();
        } else {
            co.session = None;
        }
        result
    }

    /// Connect and log in (or find a live session) without sending anything.
    pub async fn test(&self, login: &Login) -> Result<(), Failure> {
        let mut co = self.checkout(login).await?;
        let s = co.session.as_mut().expect("checked out");
        if s.authed.is_none() {
            match s.conn.auth(&login.credentials).await {
                Ok(()) => s.authed = Some(login.generation),
                Err(e) => {
                    co.session = None;
                    let f = smtp_failure(&e);
                    self.lock().unhealthy = true;
                    return Err(f);
                }
            }
        }
        self.lock().unhealthy = false;
        Ok(())
    }

    async fn checkout(&self, login: &Login) -> Result<Checkout<'_>, Failure> {
        let claimed = {
            let mut st = self.lock();
            st.busy += 1;
            let mut found = None;
            while let Some(mut s) = st.idle.pop() {
                if s.fits(login) && !s.conn.is_stale() {
                    found = Some(s);
                    break;
                }
                self.discard(s);
            }
            if let Some(s) = found {
                return Ok(Checkout {
                    pool: self,
                    session: Some(s),
                    reused: true,
                });
            }
            let wanted = Some(login.generation);
            st.pending
                .iter_mut()
                .find(|p| p.claim.is_none() && (p.generation.is_none() || p.generation == wanted))
                .map(|p| {
                    let (tx, rx) = oneshot::channel();
                    p.claim = Some(tx);
                    rx
                })
        };
        let mut co = Checkout {
            pool: self,
            session: None,
            reused: false,
        };
        if let Some(rx) = claimed {
            match rx.await {
                Ok(Handover::Ready(s)) if s.fits(login) => {
                    co.session = Some(s);
                    return Ok(co);
                }
                Ok(Handover::Ready(s)) => self.discard(s),
                Ok(Handover::Failed(f)) => return Err(f),
                Ok(Handover::Gone) | Err(_) => {}
            }
        }
        let s = self.open_within(login).await.inspect_err(|_| {
            self.lock().unhealthy = true;
        })?;
        co.session = Some(s);
        Ok(co)
    }

    /// Keep a session that just did its work: idle, with its keep-alive.
    fn keep(&self, st: &mut State, mut s: Session) {
        if !s.conn.is_usable() {
            return;
        }
        st.next_id += 1;
        s.id = st.next_id;
        let id = s.id;
        st.idle.push(s);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(keep_alive(self.me.clone(), id, self.idle));
        }
    }

    /// Close a session nobody will use, politely and in the background.
    fn discard(&self, mut s: Session) {
        if !s.conn.is_usable() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, s.conn.quit()).await;
            });
        }
    }

    async fn open_within(&self, login: &Login) -> Result<Session, Failure> {
        match tokio::time::timeout(self.timeout, self.open(login)).await {
            Ok(r) => r,
            Err(_) => Err(super::classify::timeout_failure(self.timeout.as_secs())),
        }
    }

    /// TCP, TLS, greeting, EHLO (again after STARTTLS), and AUTH unless it can go with the
    /// first mail.
    async fn open(&self, login: &Login) -> Result<Session, Failure> {
        let e = &self.endpoint;
        let tcp = tcp_connect(&e.host, e.port).await?;
        self.trips.fetch_add(1, Ordering::Relaxed);
        let hello = hello_name(tcp.local_addr().ok());
        let tcp = Counted::new(tcp, self.trips.clone());
        let smtp = |err: SmtpError| smtp_failure(&err);
        let mut conn = match e.security {
            Security::Tls => {
                let mut conn = Conn::new(self.tls(tcp).await?);
                conn.greeting().await.map_err(smtp)?;
                conn.ehlo(&hello).await.map_err(smtp)?;
                conn
            }
            Security::Starttls => {
                let mut plain = Conn::new(Stream::Plain(tcp));
                plain.greeting().await.map_err(smtp)?;
                plain.ehlo(&hello).await.map_err(smtp)?;
                plain.starttls().await.map_err(smtp)?;
                let Stream::Plain(tcp) = plain.into_io() else {
                    unreachable!("a plain connection before STARTTLS")
                };
                let mut conn = Conn::new(self.tls(tcp).await?);
                conn.ehlo(&hello).await.map_err(smtp)?;
                conn
            }
        };
        let authed = if login.credentials.pipelinable(&conn.caps) {
            None
        } else {
            conn.auth(&login.credentials).await.map_err(smtp)?;
            Some(login.generation)
        };
        debug!(
            pipelining = conn.caps.pipelining,
            chunking = conn.caps.chunking,
            logged_in = authed.is_some(),
            "smtp: session open"
        );
        Ok(Session {
            conn,
            authed,
            used: Instant::now(),
            id: 0,
        })
    }

    async fn tls(&self, tcp: Counted) -> Result<Stream, Failure> {
        let host = &self.endpoint.host;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|err| tls_failure(format!("smtp.host {host:?}: {err}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.endpoint.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|err| tls_failure(crate::snapshot::fetch::error_chain(&err)))?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// Keep the idle session `id` open with a NOOP every `keepalive` until it is taken, it has
/// been idle for `keep_for`, or it is one of several idle ones.
async fn keep_alive(pool: Weak<Sessions>, id: u64, policy: IdlePolicy) {
    loop {
        tokio::time::sleep(policy.keepalive).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut s = {
            let mut st = pool.lock();
            let Some(i) = st.idle.iter().position(|s| s.id == id) else {
                return;
            };
            let idle_for = st.idle[i].used.elapsed();
            let s = st.idle.remove(i);
            if idle_for >= policy.keep_for || !st.idle.is_empty() {
                pool.discard(s);
                return;
            }
            st.pending.push(Pending {
                id,
                generation: s.authed,
                claim: None,
            });
            s
        };
        let alive = !s.conn.is_stale()
            && matches!(
                tokio::time::timeout(NOOP_TIMEOUT, s.conn.noop()).await,
                Ok(Ok(()))
            );
        let mut st = pool.lock();
        let Some(i) = st.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let pending = st.pending.remove(i);
        let handover = if alive {
            Handover::Ready(s)
        } else {
            debug!("smtp: a kept session did not answer its keep-alive; closed");
            Handover::Gone
        };
        let unclaimed = match pending.claim {
            Some(tx) => match tx.send(handover) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => handover,
        };
        match unclaimed {
            Handover::Ready(s) => st.idle.push(s),
            _ => return,
        }
    }
}

/// The EHLO argument: our address as an address literal (RFC 5321 4.1.3), which is what
/// the standard asks for when there is no meaningful host name (a container's is a random
/// id).
fn hello_name(local: Option<SocketAddr>) -> String {
    match local.map(|a| a.ip()) {
        Some(std::net::IpAddr::V4(ip)) => format!("[{ip}]"),
        Some(std::net::IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{ip}]"),
        },
        None => "[127.0.0.1]".into(),
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
                // Replies are small and every flight ends with what the server waits for:
                // nothing may sit in a buffer waiting for an acknowledgement.
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

/// The connection's bytes: plain until STARTTLS, then TLS.
enum Stream {
    Plain(Counted),
    Tls(Box<tokio_rustls::client::TlsStream<Counted>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TCP stream that counts round trips: each time data arrives after we sent something
/// (or for the first time: the greeting), the client had to wait for the server.
struct Counted {
    tcp: TcpStream,
    trips: Arc<AtomicU64>,
    sent: bool,
    heard: bool,
}

impl Counted {
    fn new(tcp: TcpStream, trips: Arc<AtomicU64>) -> Counted {
        Counted {
            tcp,
            trips,
            sent: false,
            heard: false,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before && (me.sent || !me.heard)
        {
            me.trips.fetch_add(1, Ordering::Relaxed);
            me.sent = false;
            me.heard = true;
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.sent = true;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_names_are_address_literals() {
        assert_eq!(
            hello_name(Some("192.0.2.7:5000".parse().unwrap())),
            "[192.0.2.7]"
        );
        assert_eq!(
            hello_name(Some("[2001:db8::1]:5000".parse().unwrap())),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(
            hello_name(Some("[::ffff:10.0.0.1]:5000".parse().unwrap())),
            "[10.0.0.1]"
        );
        assert_eq!(hello_name(None), "[127.0.0.1]");
    }
}
