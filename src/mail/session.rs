//! SMTP sessions: opening them (TCP with Nagle's algorithm off, implicit TLS or STARTTLS,
//! EHLO, AUTH), keeping them, and handing them to sends.
//!
//! **Round trips.** Each wait for the server costs one round trip, tens of milliseconds to
//! Gmail. Opening over STARTTLS costs six (TCP, greeting, EHLO, STARTTLS, TLS 1.3, EHLO),
//! over implicit TLS four (TCP, TLS, greeting, EHLO). AUTH PLAIN then goes out with the
//! first mail ([`super::wire`]), so a mail on a new session costs one more and a mail on a
//! kept session costs one. Every wait is counted at the socket ([`Sessions::round_trips`]).
//!
//! **Opening ahead.** [`Sessions::warm`] opens a session before the mail exists (the
//! pipeline asks when an event is going to be mailed, while its picture is fetched). A send
//! takes a kept session, else one being opened, else opens its own; at most
//! `smtp.max_connections` sessions exist at once. After a failed opening, nothing is opened
//! ahead until a send succeeds, so a wrong password or a dead server costs what the outbox's
//! retries cost, and no more.
//!
//! **Idle sessions.** A NOOP before each mail on a kept session would cost a round trip on
//! every warm send. Instead each kept session has a keeper task that
//! - hands it to a send at once, after a look at the socket that costs nothing;
//! - sends a NOOP every keep-alive interval ([`IdlePolicy::keepalive`]), off the send path;
//! - watches the socket: a server that closes an idle session (Gmail does after an
//!   unpublished while, with `451 4.4.2 Timeout`) is seen when it happens. The time the
//!   session had been idle is the server's idle limit: the keep-alive interval drops to half
//!   of it (not below [`MIN_KEEPALIVE`]), and a new session is opened ahead at once (at most
//!   [`MAX_REOPENS`] times between mails), without logging in;
//! - closes the session [`IdlePolicy::keep_for`] after the last mail (or the last call to
//!   [`Sessions::warm`]), and closes extra idle sessions beyond one at their next keep-alive.
//!
//! If a kept session still turns out dead before the server has accepted anything of the
//! mail's flight (it ends the connection, or answers `421`, after nothing or only
//! refusals), nothing was accepted: the mail goes out on a new session within the same
//! attempt.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::classify::{
    connect_failure, smtp_failure, timeout_failure, tls_failure, Class, Failure,
};
use super::wire::{Conn, Credentials, Outgoing, Sent, SmtpError};
use crate::config::Security;

/// The shortest keep-alive interval learnt from a server; a server that closes sessions
/// sooner than this after their last command is not closing idle sessions, and gets no
/// session opened ahead in their place.
pub const MIN_KEEPALIVE: Duration = Duration::from_secs(1);
/// Sessions opened ahead in place of ones the server closed, between two mails.
pub const MAX_REOPENS: u32 = 5;
/// Bound on a keep-alive NOOP.
const NOOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on QUIT when closing a session nobody needs.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How idle sessions are kept; see the module docs. The defaults are the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// A NOOP keeps an idle session open this often, until a server shows a shorter limit.
    pub keepalive: Duration,
    /// How long after the last mail one session is kept open.
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
    /// Sessions being opened.
    pub opening: usize,
    /// Sessions carrying a mail.
    pub busy: usize,
    /// Whether sessions are opened ahead (false after a failed opening, until a send
    /// succeeds).
    pub opening_ahead: bool,
    /// The keep-alive interval now (shorter than configured once a server showed a
    /// shorter idle limit).
    pub keepalive: Duration,
}

/// One login: credentials, and a number that changes when they do (XOAUTH2 tokens).
pub struct Login {
    pub credentials: Credentials,
    pub generation: u64,
}

/// Where the current login comes from (for sessions opened ahead).
pub trait Logins: Send + Sync + 'static {
    fn current(&self) -> BoxFuture<'_, Result<Login, Failure>>;
}

/// A connection ready for mail.
struct Session {
    conn: Conn<Stream>,
    /// The login generation it authenticated with; `None`: not logged in yet (AUTH PLAIN
    /// goes out with its first mail).
    authed: Option<u64>,
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
    policy: IdlePolicy,
    logins: Arc<dyn Logins>,
    state: Mutex<State>,
    trips: Arc<AtomicU64>,
    me: Weak<Sessions>,
}

struct State {
    /// Sessions not carrying a mail: kept by their keeper, or being opened.
    spare: Vec<Spare>,
    /// Sessions carrying a mail (or claimed and waited for).
    busy: usize,
    /// The last opening failed: open nothing ahead until a send succeeds.
    unhealthy: bool,
    next_id: u64,
    /// The keep-alive interval, shortened when a server closes idle sessions sooner.
    keepalive: Duration,
    /// The last mail, or the last call to [`Sessions::warm`]: sessions are kept for
    /// `keep_for` after it.
    last_use: Instant,
    /// Sessions opened ahead in place of closed ones since the last mail.
    reopens: u32,
}

impl Spare {
    /// A session its keeper holds ready, unclaimed.
    fn kept(id: u64, generation: Option<u64>, wake: &Arc<Notify>) -> Spare {
        Spare {
            id,
            generation,
            kept: true,
            claim: None,
            wake: Some(wake.clone()),
        }
    }
}

impl State {
    /// A kept session closed: it is no longer spare, and a send that had just claimed it
    /// waits for another.
    fn forget(&mut self, id: u64) {
        let Some(i) = self.spare.iter().position(|p| p.id == id) else {
            return;
        };
        if let Some(tx) = self.spare.remove(i).claim {
            let _ = tx.send(Handover::Gone);
        }
    }
}

/// A session not carrying a mail.
struct Spare {
    id: u64,
    /// The login generation it has or will have; `None`: any (not logged in, or not known
    /// yet).
    generation: Option<u64>,
    /// Kept and ready (its keeper hands it over at once), or being opened.
    kept: bool,
    claim: Option<oneshot::Sender<Handover>>,
    /// Wakes a kept session's keeper when a send claims it.
    wake: Option<Arc<Notify>>,
}

/// What a claimed spare session turned into.
enum Handover {
    Ready(Session),
    /// The opening failed: that is the claimant's failure too.
    Failed(Failure),
    /// The kept session was closed meanwhile: open another.
    Gone,
}

/// A session checked out for one send; `busy` counts it until dropped, and a session still
/// in it then is kept.
struct Checkout<'a> {
    pool: &'a Sessions,
    session: Option<Session>,
    /// It had been kept idle: it may have died unnoticed.
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
        policy: IdlePolicy,
        logins: Arc<dyn Logins>,
    ) -> Arc<Sessions> {
        Arc::new_cyclic(|me| Sessions {
            endpoint,
            max: max.max(1),
            timeout,
            policy,
            logins,
            state: Mutex::new(State {
                spare: Vec::new(),
                busy: 0,
                unhealthy: false,
                next_id: 0,
                keepalive: policy.keepalive,
                last_use: Instant::now(),
                reopens: 0,
            }),
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
            idle: st.spare.iter().filter(|p| p.kept).count(),
            opening: st.spare.iter().filter(|p| !p.kept).count(),
            busy: st.busy,
            opening_ahead: !st.unhealthy,
            keepalive: st.keepalive,
        }
    }

    /// A mail is coming: keep sessions for `keep_for` from now, and open one ahead if none
    /// is kept or being opened (within `smtp.max_connections`, and unless the last opening
    /// failed). Cheap; returns at once. Without a tokio runtime it opens nothing.
    pub fn warm(&self) {
        self.lock().last_use = Instant::now();
        self.open_ahead();
    }

    fn open_ahead(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let id = {
            let mut st = self.lock();
            let free = st.spare.iter().any(|p| p.claim.is_none());
            if st.unhealthy || free || st.spare.len() + st.busy >= self.max {
                return;
            }
            st.next_id += 1;
            let id = st.next_id;
            st.spare.push(Spare {
                id,
                generation: None,
                kept: false,
                claim: None,
                wake: None,
            });
            id
        };
        rt.spawn(async move {
            let timeout = me.timeout;
            let login = tokio::time::timeout(timeout, me.logins.current())
                .await
                .unwrap_or_else(|_| Err(timeout_failure(timeout.as_secs())));
            me.open_reserved(id, login).await;
        });
    }

    /// Open the session reserved as `id` and hand it to the send that claimed it, else
    /// keep it.
    async fn open_reserved(&self, id: u64, login: Result<Login, Failure>) {
        let opened = match login {
            Ok(login) => {
                if let Some(p) = self.lock().spare.iter_mut().find(|p| p.id == id) {
                    p.generation = Some(login.generation);
                }
                self.open_within(&login).await
            }
            Err(f) => Err(f),
        };
        let mut st = self.lock();
        let Some(i) = st.spare.iter().position(|p| p.id == id) else {
            return;
        };
        let spare = st.spare.remove(i);
        if opened.is_err() {
            st.unhealthy = true;
        }
        let handover = match opened {
            Ok(s) => Handover::Ready(s),
            Err(f) => Handover::Failed(f),
        };
        let unclaimed = match spare.claim {
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

    /// Send one message on a kept session, one being opened, or a new one.
    pub async fn send(&self, login: &Login, mail: &Outgoing<'_>) -> Result<Sent, Failure> {
        let mut co = self.checkout(login).await?;
        let mut result = self.send_on(&mut co, login, mail).await;
        if let Err(e) = &result {
            if co.reused && e.is_stale() {
                debug!(
                    "smtp: the kept session was closed by the server ({}); sending on a new one",
                    smtp_failure(e)
                );
                co.session = None;
                co.reused = false;
                co.session = Some(self.open_within(login).await.inspect_err(|_| {
                    self.lock().unhealthy = true;
                })?);
                result = self.send_on(&mut co, login, mail).await;
            }
        }
        let result = result.map_err(|e| smtp_failure(&e));
        {
            let mut st = self.lock();
            match &result {
                Ok(_) => {
                    st.unhealthy = false;
                    st.last_use = Instant::now();
                    st.reopens = 0;
                }
                Err(f) if matches!(f.class, Class::Credentials | Class::Certificate) => {
                    st.unhealthy = true
                }
                Err(_) => {}
            }
        }
        // `co` goes back to the pool (and takes the lock) as it drops, after this.
        result
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
            if let Err(e) = s.conn.auth(&login.credentials).await {
                co.session = None;
                self.lock().unhealthy = true;
                return Err(smtp_failure(&e));
            }
            s.authed = Some(login.generation);
        }
        self.lock().unhealthy = false;
        Ok(())
    }

    async fn checkout(&self, login: &Login) -> Result<Checkout<'_>, Failure> {
        let claimed = {
            let mut st = self.lock();
            st.busy += 1;
            let fits =
                |p: &Spare| p.claim.is_none() && p.generation.is_none_or(|g| g == login.generation);
            // The newest kept session first, else one being opened.
            let pick = match st.spare.iter().rposition(|p| p.kept && fits(p)) {
                Some(i) => Some(i),
                None => st.spare.iter().position(|p| !p.kept && fits(p)),
            };
            pick.map(|i| {
                let p = &mut st.spare[i];
                let (tx, rx) = oneshot::channel();
                p.claim = Some(tx);
                if let Some(wake) = &p.wake {
                    wake.notify_one();
                }
                (rx, p.kept)
            })
        };
        let mut co = Checkout {
            pool: self,
            session: None,
            reused: false,
        };
        if let Some((rx, kept)) = claimed {
            match rx.await {
                Ok(Handover::Ready(s)) if s.fits(login) => {
                    co.session = Some(s);
                    co.reused = kept;
                    return Ok(co);
                }
                Ok(Handover::Ready(s)) => discard(s),
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

    /// Keep a session that just did its work (or was opened ahead), with its keeper.
    fn keep(&self, st: &mut State, s: Session) {
        if !s.conn.is_usable() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.next_id += 1;
        let id = st.next_id;
        let wake = Arc::new(Notify::new());
        st.spare.push(Spare::kept(id, s.authed, &wake));
        rt.spawn(keeper(self.me.clone(), id, s, wake));
    }

    /// The server closed a session that had been idle for `idle`: learn its idle limit.
    /// Returns whether to open another session ahead in its place.
    fn closed_idle(&self, st: &mut State, idle: Duration) -> bool {
        if idle < MIN_KEEPALIVE {
            return false;
        }
        let interval = (idle / 2).max(MIN_KEEPALIVE);
        if interval < st.keepalive {
            info!(
                "smtp: the server closes sessions idle for about {:.1}s; a NOOP now keeps them open every {:.1}s",
                idle.as_secs_f64(),
                interval.as_secs_f64()
            );
            st.keepalive = interval;
        }
        self.may_reopen(st)
    }

    /// Whether to open a session ahead in place of a kept one that was lost: while sessions
    /// are wanted, the server takes them, and not too often between mails.
    fn may_reopen(&self, st: &mut State) -> bool {
        let within = st.last_use.elapsed() < self.policy.keep_for;
        if within && !st.unhealthy && st.reopens < MAX_REOPENS {
            st.reopens += 1;
            true
        } else {
            false
        }
    }

    async fn open_within(&self, login: &Login) -> Result<Session, Failure> {
        match tokio::time::timeout(self.timeout, self.open(login)).await {
            Ok(r) => r,
            Err(_) => Err(timeout_failure(self.timeout.as_secs())),
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
        Ok(Session { conn, authed })
    }

    async fn tls(&self, tcp: Counted) -> Result<Stream, Failure> {
        let host = &self.endpoint.host;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|err| tls_failure(format!("smtp.host {host:?}: {err}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.endpoint.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|err| tls_failure(crate::errors::error_chain(&err)))?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// Close a session nobody will use, politely and in the background.
fn discard(mut s: Session) {
    if !s.conn.is_usable() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, s.conn.quit()).await;
        });
    }
}

/// What woke a keeper.
enum Wake {
    Claimed,
    KeepAliveDue,
    ServerSpoke,
}

/// Keep session `id`: hand it over when claimed, NOOP it when due, notice when the server
/// closes it, and close it when it is no longer wanted.
async fn keeper(pool: Weak<Sessions>, id: u64, mut s: Session, wake: Arc<Notify>) {
    // The server's idle timer started with its last reply.
    let mut last = Instant::now();
    loop {
        let Some(interval) = pool.upgrade().map(|p| p.lock().keepalive) else {
            return;
        };
        let woke = tokio::select! {
            biased;
            _ = wake.notified() => Wake::Claimed,
            _ = tokio::time::sleep_until(last + interval) => Wake::KeepAliveDue,
            _ = s.conn.closed() => Wake::ServerSpoke,
        };
        let Some(pool) = pool.upgrade() else {
            return;
        };
        match woke {
            Wake::Claimed => {
                let mut st = pool.lock();
                let Some(i) = st.spare.iter().position(|p| p.id == id) else {
                    return;
                };
                let Some(tx) = st.spare[i].claim.take() else {
                    continue;
                };
                st.spare.remove(i);
                let handover = if s.conn.is_stale() {
                    Handover::Gone
                } else {
                    Handover::Ready(s)
                };
                match tx.send(handover) {
                    Ok(()) => return,
                    Err(Handover::Ready(back)) => {
                        // The send gave up meanwhile: keep it.
                        s = back;
                        st.spare.push(Spare::kept(id, s.authed, &wake));
                    }
                    Err(_) => return,
                }
            }
            Wake::KeepAliveDue => {
                let close = {
                    let mut st = pool.lock();
                    let Some(i) = st.spare.iter().position(|p| p.id == id) else {
                        return;
                    };
                    if st.spare[i].claim.is_some() {
                        // Claimed just now: the wake-up is already waiting.
                        continue;
                    }
                    let unwanted = st.last_use.elapsed() >= pool.policy.keep_for;
                    let extra = st
                        .spare
                        .iter()
                        .any(|p| p.kept && p.id != id && p.claim.is_none());
                    if unwanted || extra {
                        st.spare.remove(i);
                    }
                    unwanted || extra
                };
                if close {
                    debug!("smtp: closing an idle session");
                    let _ = tokio::time::timeout(QUIT_TIMEOUT, s.conn.quit()).await;
                    return;
                }
                let alive = matches!(
                    tokio::time::timeout(NOOP_TIMEOUT, s.conn.noop()).await,
                    Ok(Ok(()))
                );
                if alive {
                    last = Instant::now();
                    continue;
                }
                debug!("smtp: a kept session did not answer its keep-alive; closed");
                let reopen = {
                    let mut st = pool.lock();
                    st.forget(id);
                    pool.may_reopen(&mut st)
                };
                if reopen {
                    pool.open_ahead();
                }
                return;
            }
            Wake::ServerSpoke => {
                let idle = last.elapsed();
                debug!(
                    "smtp: the server closed a session idle for {:.1}s",
                    idle.as_secs_f64()
                );
                let reopen = {
                    let mut st = pool.lock();
                    st.forget(id);
                    pool.closed_idle(&mut st, idle)
                };
                if reopen {
                    pool.open_ahead();
                }
                return;
            }
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
