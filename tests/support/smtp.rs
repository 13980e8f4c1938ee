//! An SMTP server on 127.0.0.1 that answers the way smtp.gmail.com does: STARTTLS on one
//! port (like 587), implicit TLS on another (like 465), AUTH PLAIN/LOGIN/XOAUTH2 with Gmail's
//! replies for app passwords, account passwords and bad credentials, and fault injection for
//! retry tests. Everything it receives is recorded for assertions.
//!
//! Like Gmail it offers PIPELINING (RFC 2920) and CHUNKING (RFC 3030): commands are answered
//! in order, and replies are held back while more client bytes are already waiting and sent
//! together when the server would otherwise wait for input, so a pipelined group gets its
//! replies in one packet. Bytes pipelined after STARTTLS close the connection. It can also
//! listen on another address (e.g. across a delay line in a network namespace) and close
//! idle sessions as Gmail does.
//!
//! For counting round trips, each connection keeps a log of [`Step`]s: when the client's
//! next bytes arrived after the server had flushed replies, STARTTLS and TLS handshakes,
//! stalls inside a message body, and which message was accepted.
#![allow(dead_code)]

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::TlsAcceptor;

use super::certs::TestCa;

/// Gmail's advertised SIZE limit; larger messages get 552 5.3.4.
pub const MAX_MESSAGE_SIZE: usize = 35_882_577;
const HOST: &str = "smtp.test.invalid";
const COMMAND_LINE_LIMIT: usize = 16 * 1024;
const DATA_LINE_LIMIT: usize = 1024 * 1024;
/// RFC 5322's limit on a message line without its CRLF; Gmail refuses a message with a longer
/// one (`500 5.5.2 Line too long`).
pub const MAX_LINE_OCTETS: usize = 998;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One message the server accepted (250 after DATA or BDAT LAST).
#[derive(Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-stuffing undone, CRLF line ends kept.
    pub data: Vec<u8>,
    /// Which listener it came in on (`starttls_port` or `tls_port`).
    pub port: u16,
    /// When the server accepted it: just before its 250 reply was written.
    pub accepted_at: Instant,
}

impl std::fmt::Debug for ReceivedMail {
    // The data can be megabytes of base64; failed assertions should stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMail")
            .field("mail_from", &self.mail_from)
            .field("rcpt_to", &self.rcpt_to)
            .field("port", &self.port)
            .field("subject", &self.header("Subject"))
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

impl ReceivedMail {
    /// The header section, unfolded: one `(name, value)` per header, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.data);
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = out.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                out.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        out
    }

    /// First header called `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The Message-ID header as sent, angle brackets included.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
    }

    /// Everything after the blank line that ends the header section.
    pub fn body(&self) -> &[u8] {
        let d = &self.data;
        if let Some(i) = d.windows(4).position(|w| w == b"\r\n\r\n") {
            return &d[i + 4..];
        }
        if let Some(i) = d.windows(2).position(|w| w == b"\n\n") {
            return &d[i + 2..];
        }
        &[]
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A misbehaviour for the next occurrences of one stage of the dialogue.
///
/// Reply texts start with a three-digit code; several lines are separated by `\n` and the
/// continuation dashes are added here (a line may already carry `NNN-`/`NNN `). Unless the
/// text already ends with `gsmtp`, ` <id> - gsmtp` is appended as Gmail does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sent instead of the 220 greeting; the connection is then closed.
    Greeting(String),
    /// Sent in answer to AUTH, without looking at the credentials.
    Auth(String),
    /// Sent after the final dot (or BDAT LAST) instead of 250; the message is not stored.
    DataEnd(String),
    /// Partway through the message body, close the socket: after 354, once the first line
    /// is read; in a BDAT chunk, once half of it (at most 1 KiB) is read.
    DropMidData,
}

impl Fault {
    fn stage(&self) -> u8 {
        match self {
            Fault::Greeting(_) => 0,
            Fault::Auth(_) => 1,
            Fault::DataEnd(_) => 2,
            Fault::DropMidData => 3,
        }
    }
}

/// Everything the server recorded, plus its switches.
#[derive(Default)]
pub struct State {
    pub messages: Vec<ReceivedMail>,
    pub auth_times: Vec<Instant>,
    pub connections: usize,
    pub transcript: Vec<String>,
    /// Pending faults with how many more times each applies.
    pub faults: Vec<(Fault, usize)>,
    pub down: bool,
    pub silent: bool,
    /// One log per accepted connection, in order (`conn_logs[n - 1]` is connection `n`).
    pub conn_logs: Vec<ConnLog>,
}

/// What one connection did, step by step, as the server saw it.
#[derive(Clone, Debug)]
pub struct ConnLog {
    /// 1-based, as in the transcript.
    pub conn_no: usize,
    pub port: u16,
    /// When `accept` returned (the client's TCP handshake is complete by then).
    pub accepted_at: Instant,
    pub steps: Vec<(Instant, Step)>,
}

/// One event in a [`ConnLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The server had flushed replies, and then read the client's next bytes at a command
    /// boundary (a command, an AUTH continuation line, or the first bytes of a DATA body):
    /// `waited` is the time from that flush to their arrival, near zero when they were
    /// already there (pipelined), at least one round trip when the client waited for the
    /// replies. `after` is the last reply line flushed.
    Reply { waited: Duration, after: String },
    /// STARTTLS was accepted: the client waits for this 220 before its TLS hello, one round
    /// trip by the protocol.
    StartTls,
    /// A TLS handshake completed, costing the client `round_trips` (TLS 1.3: 1, or 2 after a
    /// HelloRetryRequest; TLS 1.2: 2, or 1 when resumed).
    Tls { version: String, round_trips: u32 },
    /// Inside a message body (DATA lines after the first, BDAT chunks) the server had to wait
    /// `waited` (at least 1 ms) for more bytes: the client's TCP was held back, e.g. by slow
    /// start.
    Stall { waited: Duration },
    /// The message at this index of [`State::messages`] was accepted.
    Accepted { message: usize },
    /// The server closed the session after it sat idle for the idle timeout.
    IdleClose,
    /// A NOOP arrived (a keep-alive, when it comes between mails).
    Noop,
}

impl State {
    fn take_fault(&mut self, stage: u8) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|(f, n)| f.stage() == stage && *n > 0)?;
        let fault = self.faults[i].0.clone();
        self.faults[i].1 -= 1;
        if self.faults[i].1 == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}

#[derive(Clone)]
struct Accounts {
    username: String,
    app_password: String,
    account_password: String,
    oauth_token: String,
}

/// Creates a listening socket on an address (e.g. inside a network namespace).
pub type Binder = Arc<dyn Fn(SocketAddr) -> io::Result<std::net::TcpListener> + Send + Sync>;

pub struct SmtpBuilder {
    self_signed: bool,
    accounts: Accounts,
    starttls_port: u16,
    ip: IpAddr,
    binder: Binder,
    idle_timeout: Option<Duration>,
}

impl SmtpBuilder {
    /// Listen for STARTTLS on this port instead of a free one (0), e.g. 25 for clients
    /// that cannot be told a port.
    pub fn starttls_port(mut self, port: u16) -> Self {
        self.starttls_port = port;
        self
    }
    /// Listen on `ip` (both ports), creating the sockets with `bind`; the certificate also
    /// names `ip`. For a server across a delay line, `bind` creates them in its namespace.
    pub fn listen_on(
        mut self,
        ip: IpAddr,
        bind: impl Fn(SocketAddr) -> io::Result<std::net::TcpListener> + Send + Sync + 'static,
    ) -> Self {
        self.ip = ip;
        self.binder = Arc::new(bind);
        self
    }
    /// Close a session that sends nothing for `idle` while the server waits for a command,
    /// with Gmail's `451 4.4.2 Timeout - closing connection.`
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }
    /// Present one self-signed certificate made the ordinary way (`openssl req -x509`: it
    /// says CA:TRUE and is its own issuer) instead of a leaf signed by a test CA; `ca_file`
    /// then holds that certificate itself.
    pub fn self_signed(mut self) -> Self {
        self.self_signed = true;
        self
    }
    pub fn username(mut self, v: &str) -> Self {
        self.accounts.username = v.to_string();
        self
    }
    pub fn app_password(mut self, v: &str) -> Self {
        self.accounts.app_password = v.to_string();
        self
    }
    pub fn account_password(mut self, v: &str) -> Self {
        self.accounts.account_password = v.to_string();
        self
    }
    pub fn oauth_token(mut self, v: &str) -> Self {
        self.accounts.oauth_token = v.to_string();
        self
    }

    pub async fn start(self) -> SmtpServer {
        super::install_crypto();
        let certs = if self.self_signed {
            TestCa::self_signed(self.ip)
        } else {
            TestCa::generate(self.ip)
        };
        let dir = tempfile::Builder::new()
            .prefix("snapmail-smtp-")
            .tempdir()
            .expect("create temp dir for the SMTP server");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &certs.ca_pem).expect("write ca.pem");

        let listen = |port: u16, what: &str| {
            let std_listener = (self.binder)(SocketAddr::new(self.ip, port))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .unwrap_or_else(|e| panic!("bind SMTP {what} listener on {}:{port}: {e}", self.ip));
            TcpListener::from_std(std_listener).expect("register SMTP listener")
        };
        let starttls = listen(self.starttls_port, "STARTTLS");
        let tls = listen(0, "TLS");
        let starttls_port = starttls.local_addr().unwrap().port();
        let tls_port = tls.local_addr().unwrap().port();

        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::new(Shared {
            accounts: self.accounts,
            acceptor: TlsAcceptor::from(certs.server_config()),
            state: state.clone(),
            runtime: tokio::runtime::Handle::current(),
            listeners: [
                Slot::new(starttls_port, false, starttls),
                Slot::new(tls_port, true, tls),
            ],
            conns: Mutex::new(Vec::new()),
            ids: AtomicU64::new(0),
            ip: self.ip,
            binder: self.binder,
            idle_timeout: self.idle_timeout,
        });
        for slot in &shared.listeners {
            spawn_accept_loop(&shared, slot);
        }
        SmtpServer {
            ip: self.ip,
            starttls_port,
            tls_port,
            ca_file,
            ca_pem: certs.ca_pem,
            state,
            shared,
            _dir: dir,
        }
    }
}

pub struct SmtpServer {
    /// The address both ports listen on (127.0.0.1 unless set with `listen_on`).
    pub ip: IpAddr,
    /// Plain SMTP that must be upgraded with STARTTLS, like port 587.
    pub starttls_port: u16,
    /// TLS from the first byte, like port 465.
    pub tls_port: u16,
    /// PEM of the CA that signed the server certificate (for `localhost`, `127.0.0.1` and
    /// `ip`).
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub state: Arc<Mutex<State>>,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

/// Same as `SmtpServer::builder().start().await`.
pub async fn start() -> SmtpServer {
    SmtpServer::builder().start().await
}

/// One complete (possibly multi-line) SMTP reply from `io`, its lines without CRLF. Panics
/// on a timeout, a closed connection or a line without CRLF.
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(io: &mut R) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), io.read_line(&mut line))
            .await
            .expect("timed out reading a reply")
            .expect("read a reply");
        assert!(n > 0, "connection closed; reply so far: {lines:?}");
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        let line = line.trim_end_matches("\r\n").to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

impl SmtpServer {
    /// A TLS client that trusts this server's CA and nothing else (for talking SMTP by
    /// hand).
    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        super::install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.expect("the CA is PEM"))
                .expect("a CA certificate");
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    pub fn builder() -> SmtpBuilder {
        SmtpBuilder {
            self_signed: false,
            accounts: Accounts {
                username: "cam@example.com".into(),
                app_password: "abcdefghijklmnop".into(),
                account_password: "correct-horse-account".into(),
                oauth_token: "ya29.valid-token".into(),
            },
            starttls_port: 0,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            binder: Arc::new(std::net::TcpListener::bind::<SocketAddr>),
            idle_timeout: None,
        }
    }

    pub async fn start() -> SmtpServer {
        Self::builder().start().await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.lock().messages.clone()
    }

    /// Every AUTH command received, whatever its outcome.
    pub fn auth_attempts(&self) -> usize {
        self.lock().auth_times.len()
    }

    pub fn auth_attempt_times(&self) -> Vec<Instant> {
        self.lock().auth_times.clone()
    }

    /// TCP connections accepted on either port.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// `C:`/`S:` lines of every connection (interleaved when connections overlap), with
    /// `-- ...` lines marking connection events. AUTH payloads appear as `[auth]` and message
    /// content as `[data: N bytes]`.
    pub fn transcript(&self) -> String {
        self.lock().transcript.join("\n")
    }

    /// Every connection's log of steps, for counting round trips (see [`Step`]).
    pub fn conn_logs(&self) -> Vec<ConnLog> {
        self.lock().conn_logs.clone()
    }

    /// How many messages were accepted so far (cheaper than `messages().len()`).
    pub fn count(&self) -> usize {
        self.lock().messages.len()
    }

    /// When each message was accepted, in order.
    pub fn accepted_times(&self) -> Vec<Instant> {
        self.lock().messages.iter().map(|m| m.accepted_at).collect()
    }

    /// Waits until at least `n` messages were accepted and returns all of them.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            // Counting is cheap; the messages (megabytes with pictures) are copied once.
            if self.count() >= n {
                return self.messages();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} message(s) on the SMTP server; \
                     got {} (connections: {}, AUTH commands: {})\n--- transcript ---\n{}",
                    self.count(),
                    self.connections(),
                    self.auth_attempts(),
                    self.transcript()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next `times` occurrences of the fault's stage misbehave as described.
    pub fn inject(&self, fault: Fault, times: usize) {
        if let Fault::Greeting(t) | Fault::Auth(t) | Fault::DataEnd(t) = &fault {
            assert!(
                t.len() >= 3 && t.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "fault reply must start with a three-digit code: {t:?}"
            );
        }
        if times > 0 {
            self.lock().faults.push((fault, times));
        }
    }

    /// Injected faults not yet used up, counting each remaining occurrence.
    pub fn faults_pending(&self) -> usize {
        self.lock().faults.iter().map(|(_, n)| n).sum()
    }

    /// Down: both listening sockets are closed (connects are refused) and open connections
    /// are cut. Up again: the same ports are bound anew.
    pub fn set_down(&self, down: bool) {
        {
            let mut st = self.lock();
            if st.down == down {
                return;
            }
            st.down = down;
        }
        if down {
            self.shared.close_listeners();
            self.shared.cut_connections();
        } else {
            for slot in &self.shared.listeners {
                slot.rebind(&self.shared);
                spawn_accept_loop(&self.shared, slot);
            }
        }
    }

    /// Silent: new connections are accepted but never get a byte (not even the TLS
    /// handshake on the TLS port). Connections already open carry on.
    pub fn set_silent(&self, silent: bool) {
        self.lock().silent = silent;
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shared.close_listeners();
        self.shared.cut_connections();
    }
}

/// A listening port that accepts connections and never says anything. Abort the handle
/// to stop it.
pub async fn silent_port() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind silent listener");
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.spawn(drain(stream));
        }
    });
    (port, task)
}

/// A port on 127.0.0.1 with nothing listening (connects are refused).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Reads and discards until the peer closes.
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking connection task must not hide the recording from the test.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Listeners

struct Shared {
    accounts: Accounts,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<State>>,
    runtime: tokio::runtime::Handle,
    listeners: [Slot; 2],
    conns: Mutex<Vec<AbortHandle>>,
    ids: AtomicU64,
    ip: IpAddr,
    binder: Binder,
    idle_timeout: Option<Duration>,
}

/// A listening socket that `set_down` can close synchronously: the accept loop only borrows
/// it while polling, so taking it out of the mutex and dropping it unbinds the port at once.
struct Slot {
    port: u16,
    implicit_tls: bool,
    listener: Mutex<Option<TcpListener>>,
    accept_task: Mutex<Option<AbortHandle>>,
}

impl Slot {
    fn new(port: u16, implicit_tls: bool, listener: TcpListener) -> Slot {
        Slot {
            port,
            implicit_tls,
            listener: Mutex::new(Some(listener)),
            accept_task: Mutex::new(None),
        }
    }

    fn close(&self) {
        drop(self.listener.lock().unwrap().take());
        if let Some(task) = self.accept_task.lock().unwrap().take() {
            task.abort();
        }
    }

    fn rebind(&self, shared: &Shared) {
        let std_listener = (shared.binder)(SocketAddr::new(shared.ip, self.port))
            .unwrap_or_else(|e| panic!("rebinding SMTP port {} failed: {e}", self.port));
        std_listener.set_nonblocking(true).unwrap();
        let _guard = shared.runtime.enter();
        let listener = TcpListener::from_std(std_listener).expect("register listener");
        *self.listener.lock().unwrap() = Some(listener);
    }
}

impl Shared {
    fn close_listeners(&self) {
        for slot in &self.listeners {
            slot.close();
        }
    }

    fn cut_connections(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!(
            "5a1b9c0de{n:04x}-{:x}sm{}.{}",
            n * 7919 + 13,
            1000 + n,
            n % 97
        )
    }

    fn record(&self, line: String) {
        lock(&self.state).transcript.push(line);
    }

    fn step(&self, conn_no: usize, step: Step) {
        if let Some(log) = lock(&self.state).conn_logs.get_mut(conn_no - 1) {
            log.steps.push((Instant::now(), step));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The wire: reply batching and the round-trip log

/// The connection under the dialogue's `BufReader`. Replies are queued, not written; they
/// go out together when the server is about to wait for client bytes that have not arrived
/// (RFC 2920 section 3.1), on `flush`, and before shutdown. Reads are logged as [`Step`]s.
struct Wire<S> {
    inner: S,
    shared: Arc<Shared>,
    conn_no: usize,
    out: Vec<u8>,
    /// The last reply line queued, for the log.
    last_line: String,
    /// When replies were last flushed, if no client bytes arrived since.
    flushed: Option<Instant>,
    /// When the current read started waiting, if it had to.
    waiting_since: Option<Instant>,
    /// Reading the inside of a message body (stalls there are TCP rounds, not replies).
    body: bool,
}

type Io<S> = BufReader<Wire<S>>;

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(inner: S, shared: Arc<Shared>, conn_no: usize) -> Wire<S> {
        Wire {
            inner,
            shared,
            conn_no,
            out: Vec::new(),
            last_line: String::new(),
            flushed: None,
            waiting_since: None,
            body: false,
        }
    }

    fn queue(&mut self, lines: &[String]) {
        for line in lines {
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        if let Some(last) = lines.last() {
            self.last_line.clone_from(last);
        }
    }

    /// Writes every queued reply and flushes the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let had_output = !self.out.is_empty();
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        if had_output {
            self.flushed = Some(Instant::now());
        }
        Poll::Ready(Ok(()))
    }

    /// Client bytes arrived: log what they tell about the round trips.
    fn arrived(&mut self) {
        let now = Instant::now();
        let waited = self.waiting_since.take();
        let step = match self.flushed.take() {
            Some(flushed) if !self.body => Some(Step::Reply {
                waited: now - flushed,
                after: self.last_line.clone(),
            }),
            _ => waited
                .map(|since| now - since)
                .filter(|w| self.body && *w >= Duration::from_millis(1))
                .map(|waited| Step::Stall { waited }),
        };
        if let Some(step) = step {
            self.shared.step(self.conn_no, step);
        }
    }
}

async fn flush<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<S>) -> io::Result<()> {
    poll_fn(|cx| io.get_mut().poll_drain(cx)).await
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        for _ in 0..2 {
            let before = buf.filled().len();
            if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
                if r.is_ok() && buf.filled().len() > before {
                    this.arrived();
                }
                return Poll::Ready(r);
            }
            // Nothing from the client: this is when pending replies go out. Then look again,
            // which also registers for the next bytes.
            if this.out.is_empty() {
                break;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.waiting_since.get_or_insert_with(Instant::now);
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    /// Queued like replies; the bytes go out with the next flush.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn spawn_accept_loop(shared: &Arc<Shared>, slot: &Slot) {
    let index = if slot.implicit_tls { 1 } else { 0 };
    let task_shared = shared.clone();
    let task = shared.runtime.spawn(async move {
        let shared = task_shared;
        let slot = &shared.listeners[index];
        loop {
            let accepted = poll_fn(|cx| match slot.listener.lock().unwrap().as_ref() {
                Some(l) => l.poll_accept(cx).map(Some),
                None => Poll::Ready(None),
            })
            .await;
            let (stream, peer) = match accepted {
                None => return,
                Some(Ok(conn)) => conn,
                // e.g. EMFILE; nothing sensible to do but keep accepting
                Some(Err(_)) => continue,
            };
            let conn_no = {
                let mut st = lock(&shared.state);
                st.connections += 1;
                let conn_no = st.connections;
                st.conn_logs.push(ConnLog {
                    conn_no,
                    port: slot.port,
                    accepted_at: Instant::now(),
                    steps: Vec::new(),
                });
                conn_no
            };
            let conn = shared.runtime.spawn(serve(
                shared.clone(),
                stream,
                peer,
                slot.port,
                slot.implicit_tls,
                conn_no,
            ));
            let mut conns = shared.conns.lock().unwrap();
            conns.retain(|c| !c.is_finished());
            conns.push(conn.abort_handle());
        }
    });
    *slot.accept_task.lock().unwrap() = Some(task.abort_handle());
}

async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    implicit_tls: bool,
    conn_no: usize,
) {
    let kind = if implicit_tls {
        "implicit TLS"
    } else {
        "plain"
    };
    if lock(&shared.state).silent {
        shared.record(format!(
            "-- connection {conn_no} on port {port} ({kind}): silent"
        ));
        drain(stream).await;
        return;
    }
    shared.record(format!("-- connection {conn_no} on port {port} ({kind})"));
    // Replies go out as soon as they are flushed (see `Wire`), not when Nagle's algorithm
    // lets them.
    let _ = stream.set_nodelay(true);
    let mut session = Session {
        shared: shared.clone(),
        peer,
        port,
        conn_no,
        tls: implicit_tls,
        greeted: false,
        authed: false,
        mail_from: None,
        rcpt_to: Vec::new(),
        chunks: None,
    };
    let wire = |s| BufReader::new(Wire::new(s, shared.clone(), conn_no));
    let wire_plain = |s| BufReader::new(Wire::new(s, shared.clone(), conn_no));
    let outcome = if implicit_tls {
        match handshake(&shared, stream, conn_no).await {
            Some(tls) => session.run(wire(tls), true).await.map(|_| ()),
            None => return,
        }
    } else {
        match session.run(wire_plain(stream), true).await {
            Ok(End::StartTls(reader)) => {
                if !reader.buffer().is_empty() {
                    shared.record(format!(
                        "-- connection {conn_no}: data pipelined after STARTTLS, closing"
                    ));
                    return;
                }
                shared.step(conn_no, Step::StartTls);
                match handshake(&shared, reader.into_inner().inner, conn_no).await {
                    Some(tls) => {
                        session.tls = true;
                        session.greeted = false;
                        session.authed = false;
                        session.reset_transaction();
                        session.run(wire(tls), false).await.map(|_| ())
                    }
                    None => return,
                }
            }
            Ok(End::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(()) => shared.record(format!("-- connection {conn_no} closed")),
        Err(e) => shared.record(format!("-- connection {conn_no} ended: {e}")),
    }
}

async fn handshake(
    shared: &Shared,
    stream: TcpStream,
    conn_no: usize,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, shared.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let conn = tls.get_ref().1;
            let version = conn.protocol_version();
            let kind = conn.handshake_kind();
            use rustls::{HandshakeKind, ProtocolVersion};
            let round_trips = match (version, kind) {
                (_, Some(HandshakeKind::FullWithHelloRetryRequest)) => 2,
                (Some(ProtocolVersion::TLSv1_2), Some(HandshakeKind::Full)) => 2,
                _ => 1,
            };
            shared.step(
                conn_no,
                Step::Tls {
                    version: version.map_or("?".into(), |v| format!("{v:?}")),
                    round_trips,
                },
            );
            Some(tls)
        }
        Ok(Err(e)) => {
            shared.record(format!(
                "-- connection {conn_no}: TLS handshake failed: {e}"
            ));
            None
        }
        Err(_) => {
            shared.record(format!("-- connection {conn_no}: TLS handshake timed out"));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// The SMTP dialogue

enum End<R> {
    Closed,
    StartTls(R),
}

enum Next {
    Closed,
    StartTls,
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    port: u16,
    conn_no: usize,
    tls: bool,
    greeted: bool,
    authed: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    /// Message collected from BDAT chunks so far.
    chunks: Option<Vec<u8>>,
}

/// Reads one line including its `\n`. `Ok(false)` at end of stream with nothing read.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<bool> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        if let Some(i) = available.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&available[..=i]);
            r.consume(i + 1);
            return Ok(true);
        }
        let n = available.len();
        buf.extend_from_slice(available);
        r.consume(n);
        if buf.len() > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Lays out a reply given as text (see [`Fault`]) with Gmail's continuation dashes and tail.
fn custom_reply(text: &str, id: &str) -> Vec<String> {
    let code = &text[..3];
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let content = line
                .strip_prefix(code)
                .and_then(|rest| rest.strip_prefix(['-', ' ']))
                .unwrap_or(line);
            if i < last {
                format!("{code}-{content}")
            } else if content.trim_end().ends_with("gsmtp") {
                format!("{code} {content}")
            } else {
                format!("{code} {content} {id} - gsmtp")
            }
        })
        .collect()
}

/// Parses `FROM:<addr> params` / `TO:<addr> params`; returns the address and the parameters.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(String, Vec<&'a str>)> {
    let arg = arg.trim_start();
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let close = rest.find('>')?;
    let addr = rest[..close].to_string();
    let params = rest[close + 1..].split_whitespace().collect();
    Some((addr, params))
}

impl Session {
    fn id(&self) -> String {
        self.shared.next_id()
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.chunks = None;
    }

    fn take_fault(&self, stage: u8) -> Option<Fault> {
        lock(&self.shared.state).take_fault(stage)
    }

    /// Queues a reply; it goes out when the server next waits for the client (see `Wire`).
    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        lines: &[String],
    ) -> io::Result<()> {
        {
            let mut st = lock(&self.shared.state);
            for line in lines {
                st.transcript.push(format!("S: {line}"));
            }
        }
        io.get_mut().queue(lines);
        Ok(())
    }

    async fn send1<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        line: String,
    ) -> io::Result<()> {
        self.send(io, &[line]).await
    }

    fn starttls_required(&self) -> Vec<String> {
        vec![
            "530-5.7.0 Must issue a STARTTLS command first. For more information, go to".into(),
            "530-5.7.0  https://support.google.com/a/answer/3221692 and review RFC 3207".into(),
            format!("530 5.7.0 specifications. {} - gsmtp", self.id()),
        ]
    }

    fn auth_required(&self) -> Vec<String> {
        vec![
            "530-5.7.0 Authentication Required. For more information, go to".into(),
            format!(
                "530 5.7.0  https://support.google.com/mail/?p=WantAuthError {} - gsmtp",
                self.id()
            ),
        ]
    }

    fn bad_credentials(&self) -> Vec<String> {
        vec![
            "535-5.7.8 Username and Password not accepted. For more information, go to".into(),
            format!(
                "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {} - gsmtp",
                self.id()
            ),
        ]
    }

    fn ehlo_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("250-{HOST} at your service, [{}]", self.peer.ip()),
            format!("250-SIZE {MAX_MESSAGE_SIZE}"),
            "250-8BITMIME".into(),
        ];
        if self.tls {
            lines.push("250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH".into());
        } else {
            lines.push("250-STARTTLS".into());
        }
        lines.extend(
            [
                "250-ENHANCEDSTATUSCODES",
                "250-PIPELINING",
                "250-CHUNKING",
                "250 SMTPUTF8",
            ]
            .map(String::from),
        );
        lines
    }

    /// Runs the dialogue until the client quits or goes away, or (plain port only) until
    /// STARTTLS, when the stream is handed back for the handshake.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut io: Io<S>,
        greet: bool,
    ) -> io::Result<End<Io<S>>> {
        let end = self.dialogue(&mut io, greet).await?;
        // Whatever is still queued (a last reply before closing, the 220 before TLS).
        flush(&mut io).await?;
        Ok(match end {
            Next::Closed => End::Closed,
            Next::StartTls => End::StartTls(io),
        })
    }

    async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        greet: bool,
    ) -> io::Result<Next> {
        if greet {
            if let Some(Fault::Greeting(text)) = self.take_fault(0) {
                let reply = custom_reply(&text, &self.id());
                self.send(io, &reply).await?;
                let _ = io.shutdown().await;
                return Ok(Next::Closed);
            }
            self.send1(io, format!("220 {HOST} ESMTP snapmail-test - gsmtp"))
                .await?;
        }
        let mut raw = Vec::new();
        loop {
            if let Some(idle) = self.shared.idle_timeout {
                if tokio::time::timeout(idle, io.fill_buf()).await.is_err() {
                    let id = self.id();
                    self.send1(
                        io,
                        format!("451 4.4.2 Timeout - closing connection. {id} - gsmtp"),
                    )
                    .await?;
                    self.shared.step(self.conn_no, Step::IdleClose);
                    let _ = io.shutdown().await;
                    return Ok(Next::Closed);
                }
            }
            if !self.tls {
                let peek = io.fill_buf().await?;
                if peek.first() == Some(&0x16) {
                    self.shared.record(format!(
                        "-- connection {}: TLS handshake on the plain port, closing",
                        self.conn_no
                    ));
                    return Ok(Next::Closed);
                }
            }
            match read_line(io, &mut raw, COMMAND_LINE_LIMIT).await {
                Ok(true) => {}
                Ok(false) => return Ok(Next::Closed),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.shared.record("C: [overlong line]".into());
                    let id = self.id();
                    self.send1(io, format!("500 5.5.2 Line too long. {id} - gsmtp"))
                        .await?;
                    return Ok(Next::Closed);
                }
                Err(e) => return Err(e),
            }
            let line = String::from_utf8_lossy(trim_eol(&raw)).into_owned();
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
                None => (line.trim().to_ascii_uppercase(), String::new()),
            };
            if verb == "AUTH" {
                let mut words = arg.split_whitespace();
                let mech = words.next().unwrap_or("");
                let redacted = if words.next().is_some() {
                    format!("C: AUTH {mech} [auth]")
                } else {
                    format!("C: AUTH {mech}").trim_end().to_string()
                };
                self.shared.record(redacted);
            } else {
                self.shared.record(format!("C: {line}"));
            }

            match verb.as_str() {
                "EHLO" | "HELO" => {
                    if arg.is_empty() {
                        let id = self.id();
                        self.send1(
                            io,
                            format!("501 5.5.4 Empty HELO/EHLO argument not allowed. {id} - gsmtp"),
                        )
                        .await?;
                        continue;
                    }
                    self.greeted = true;
                    self.reset_transaction();
                    if verb == "EHLO" {
                        let lines = self.ehlo_lines();
                        self.send(io, &lines).await?;
                    } else {
                        self.send1(io, format!("250 {HOST} at your service"))
                            .await?;
                    }
                }
                "STARTTLS" => {
                    let id = self.id();
                    if self.tls {
                        self.send1(io, format!("503 5.5.1 TLS already active. {id} - gsmtp"))
                            .await?;
                    } else if !arg.is_empty() {
                        self.send1(io, format!("501 5.5.4 Syntax error. {id} - gsmtp"))
                            .await?;
                    } else {
                        self.send1(io, "220 2.0.0 Ready to start TLS".into())
                            .await?;
                        return Ok(Next::StartTls);
                    }
                }
                "AUTH" => {
                    if !self.auth(io, &arg).await? {
                        return Ok(Next::Closed);
                    }
                }
                "MAIL" => {
                    let id = self.id();
                    if !self.greeted {
                        self.send1(io, format!("503 5.5.1 EHLO/HELO first. {id} - gsmtp"))
                            .await?;
                    } else if !self.tls {
                        let r = self.starttls_required();
                        self.send(io, &r).await?;
                    } else if !self.authed {
                        let r = self.auth_required();
                        self.send(io, &r).await?;
                    } else if self.mail_from.is_some() {
                        self.send1(io, format!("503 5.5.1 Nested MAIL command. {id} - gsmtp"))
                            .await?;
                    } else {
                        match parse_path(&arg, "FROM:") {
                            None => {
                                self.send1(io, format!("555 5.5.2 Syntax error. {id} - gsmtp"))
                                    .await?
                            }
                            Some((addr, params)) => {
                                let mut reply = format!("250 2.1.0 OK {id} - gsmtp");
                                for p in params {
                                    let (key, value) = p.split_once('=').unwrap_or((p, ""));
                                    match key.to_ascii_uppercase().as_str() {
                                        "SIZE" => {
                                            if value.parse::<usize>().unwrap_or(0)
                                                > MAX_MESSAGE_SIZE
                                            {
                                                reply = format!(
                                                    "552 5.3.4 Message size exceeds fixed \
                                                     maximum message size. {id} - gsmtp"
                                                );
                                            }
                                        }
                                        "BODY" | "SMTPUTF8" | "AUTH" | "RET" | "ENVID" => {}
                                        _ => {
                                            reply = format!(
                                                "555 5.5.4 Unsupported option: {key} {id} - gsmtp"
                                            );
                                        }
                                    }
                                }
                                if reply.starts_with("250") {
                                    self.mail_from = Some(addr);
                                }
                                self.send1(io, reply).await?;
                            }
                        }
                    }
                }
                "RCPT" => {
                    let id = self.id();
                    if self.mail_from.is_none() {
                        self.send1(io, format!("503 5.5.1 MAIL first. {id} - gsmtp"))
                            .await?;
                    } else {
                        match parse_path(&arg, "TO:") {
                            Some((addr, _)) if !addr.is_empty() => {
                                self.rcpt_to.push(addr);
                                self.send1(io, format!("250 2.1.5 OK {id} - gsmtp")).await?;
                            }
                            _ => {
                                self.send1(io, format!("555 5.5.2 Syntax error. {id} - gsmtp"))
                                    .await?
                            }
                        }
                    }
                }
                "DATA" => {
                    let id = self.id();
                    if self.mail_from.is_none() {
                        self.send1(io, format!("503 5.5.1 MAIL first. {id} - gsmtp"))
                            .await?;
                        continue;
                    }
                    if self.rcpt_to.is_empty() {
                        self.send1(io, format!("503 5.5.1 RCPT first. {id} - gsmtp"))
                            .await?;
                        continue;
                    }
                    if self.chunks.is_some() {
                        self.send1(io, format!("503 5.5.1 BDAT in progress. {id} - gsmtp"))
                            .await?;
                        continue;
                    }
                    self.send1(io, format!("354  Go ahead {id} - gsmtp"))
                        .await?;
                    if let Some(Fault::DropMidData) = self.take_fault(3) {
                        let got = read_line(io, &mut raw, DATA_LINE_LIMIT).await;
                        let n = if matches!(got, Ok(true)) {
                            raw.len()
                        } else {
                            0
                        };
                        self.shared
                            .record(format!("C: [data: dropped after {n} bytes]"));
                        return Ok(Next::Closed);
                    }
                    let Some((data, too_big)) = self.read_data(io).await? else {
                        self.shared
                            .record("C: [data: connection closed mid-data]".into());
                        return Ok(Next::Closed);
                    };
                    self.shared
                        .record(format!("C: [data: {} bytes]", data.len()));
                    self.finish_message(io, data, too_big).await?;
                }
                "BDAT" => {
                    if !self.bdat(io, &arg).await? {
                        return Ok(Next::Closed);
                    }
                }
                "RSET" => {
                    self.reset_transaction();
                    let id = self.id();
                    self.send1(io, format!("250 2.1.5 Flushed {id} - gsmtp"))
                        .await?;
                }
                "NOOP" => {
                    self.shared.step(self.conn_no, Step::Noop);
                    let id = self.id();
                    self.send1(io, format!("250 2.0.0 OK {id} - gsmtp")).await?;
                }
                "QUIT" => {
                    let id = self.id();
                    self.send1(io, format!("221 2.0.0 closing connection {id} - gsmtp"))
                        .await?;
                    let _ = io.shutdown().await;
                    return Ok(Next::Closed);
                }
                _ => {
                    let id = self.id();
                    self.send1(io, format!("502 5.5.1 Unrecognized command. {id} - gsmtp"))
                        .await?;
                }
            }
        }
    }

    /// Message lines up to the lone dot, dot-stuffing undone. `None` if the client went away.
    async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> io::Result<Option<(Vec<u8>, bool)>> {
        let got = self.read_data_lines(io).await;
        io.get_mut().body = false;
        got
    }

    async fn read_data_lines<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> io::Result<Option<(Vec<u8>, bool)>> {
        let mut data = Vec::new();
        let mut too_big = false;
        let mut line = Vec::new();
        loop {
            if !read_line(io, &mut line, DATA_LINE_LIMIT).await? {
                return Ok(None);
            }
            // The first line answers the 354; the rest is the body streaming in.
            io.get_mut().body = true;
            if line == b".\r\n" || line == b".\n" {
                return Ok(Some((data, too_big)));
            }
            if !line.ends_with(b"\n") {
                // end of stream inside a line
                return Ok(None);
            }
            let content = line.strip_prefix(b".").unwrap_or(&line);
            if too_big || data.len() + content.len() > MAX_MESSAGE_SIZE {
                too_big = true;
                data.clear();
            } else {
                data.extend_from_slice(content);
            }
        }
    }

    async fn finish_message<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        data: Vec<u8>,
        too_big: bool,
    ) -> io::Result<()> {
        let id = self.id();
        if let Some(Fault::DataEnd(text)) = self.take_fault(2) {
            self.reset_transaction();
            let reply = custom_reply(&text, &id);
            return self.send(io, &reply).await;
        }
        if too_big {
            self.reset_transaction();
            let reply = vec![
                "552-5.3.4 Your message exceeded Google's message size limits. For more \
                 information, go to"
                    .to_string(),
                format!("552 5.3.4  https://support.google.com/mail/?p=MaxSizeError {id} - gsmtp"),
            ];
            return self.send(io, &reply).await;
        }
        let overlong = data
            .split(|&b| b == b'\n')
            .any(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > MAX_LINE_OCTETS);
        if overlong {
            self.reset_transaction();
            self.shared
                .record("-- message refused: a line over 998 octets".into());
            return self
                .send1(io, format!("500 5.5.2 Line too long. {id} - gsmtp"))
                .await;
        }
        let mail = ReceivedMail {
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            data,
            port: self.port,
            accepted_at: Instant::now(),
        };
        self.reset_transaction();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Stored before the reply goes out, so a test that saw 250 also sees the message.
        let message = {
            let mut st = lock(&self.shared.state);
            st.messages.push(mail);
            st.messages.len() - 1
        };
        self.shared.step(self.conn_no, Step::Accepted { message });
        self.send1(io, format!("250 2.0.0 OK  {ts} {id} - gsmtp"))
            .await
    }

    /// `BDAT <size> [LAST]`. Returns false when the connection must end.
    async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        arg: &str,
    ) -> io::Result<bool> {
        let id = self.id();
        let mut words = arg.split_whitespace();
        let size = words.next().and_then(|s| s.parse::<usize>().ok());
        let last = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("LAST") => true,
            Some(_) => {
                self.send1(io, format!("501 5.5.4 Syntax error. {id} - gsmtp"))
                    .await?;
                return Ok(true);
            }
        };
        let Some(size) = size else {
            self.send1(io, format!("501 5.5.4 Syntax error. {id} - gsmtp"))
                .await?;
            return Ok(true);
        };
        if let Some(Fault::DropMidData) = self.take_fault(3) {
            let mut part = vec![0u8; (size / 2).min(1024)];
            io.get_mut().body = true;
            let got = io.read_exact(&mut part).await;
            io.get_mut().body = false;
            let n = if got.is_ok() { part.len() } else { 0 };
            self.shared
                .record(format!("C: [data: dropped after {n} bytes of a chunk]"));
            return Ok(false);
        }
        // The chunk follows the command whatever we think of it; read it first.
        let mut chunk = vec![0u8; size.min(MAX_MESSAGE_SIZE + 1)];
        io.get_mut().body = true;
        let got = io.read_exact(&mut chunk).await;
        io.get_mut().body = false;
        if got.is_err() {
            self.shared
                .record("C: [data: connection closed mid-chunk]".into());
            return Ok(false);
        }
        if size > chunk.len() {
            // far over the limit: swallow the rest without keeping it
            io.get_mut().body = true;
            let mut rest = (&mut *io).take((size - chunk.len()) as u64);
            let swallowed = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
            io.get_mut().body = false;
            swallowed?;
        }
        self.shared.record(format!("C: [data: {size} bytes]"));
        if self.mail_from.is_none() || self.rcpt_to.is_empty() {
            self.send1(io, format!("503 5.5.1 RCPT first. {id} - gsmtp"))
                .await?;
            return Ok(true);
        }
        let mut data = self.chunks.take().unwrap_or_default();
        let too_big = data.len() + size > MAX_MESSAGE_SIZE;
        if !too_big {
            data.extend_from_slice(&chunk);
        }
        if last {
            self.finish_message(io, data, too_big).await?;
        } else {
            self.chunks = Some(data);
            self.send1(
                io,
                format!("250 2.0.0 OK {size} octets received {id} - gsmtp"),
            )
            .await?;
        }
        Ok(true)
    }

    /// Reads one continuation line of an AUTH exchange. `None` if the client went away.
    async fn auth_line<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> io::Result<Option<String>> {
        let mut raw = Vec::new();
        if !read_line(io, &mut raw, COMMAND_LINE_LIMIT).await? {
            return Ok(None);
        }
        self.shared.record("C: [auth]".into());
        Ok(Some(
            String::from_utf8_lossy(trim_eol(&raw)).trim().to_string(),
        ))
    }

    /// Handles one AUTH command. Returns false when the connection must end.
    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        arg: &str,
    ) -> io::Result<bool> {
        lock(&self.shared.state).auth_times.push(Instant::now());
        let mut words = arg.split_whitespace();
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        let id = self.id();
        if !self.greeted {
            self.send1(io, format!("503 5.5.1 EHLO/HELO first. {id} - gsmtp"))
                .await?;
            return Ok(true);
        }
        if !self.tls {
            let r = self.starttls_required();
            self.send(io, &r).await?;
            return Ok(true);
        }
        if self.authed {
            self.send1(io, format!("503 5.5.1 Already authenticated. {id} - gsmtp"))
                .await?;
            return Ok(true);
        }
        if let Some(Fault::Auth(text)) = self.take_fault(1) {
            if text.starts_with('2') {
                self.authed = true;
            }
            let reply = custom_reply(&text, &id);
            self.send(io, &reply).await?;
            return Ok(true);
        }

        // Ask for a response when none came with the command; "*" cancels.
        macro_rules! response {
            ($prompt:expr) => {
                match self.next_response(io, $prompt).await? {
                    Some(Ok(r)) => r,
                    Some(Err(())) => return Ok(true),
                    None => return Ok(false),
                }
            };
        }

        match mech.as_str() {
            "PLAIN" => {
                let encoded = match initial {
                    Some(r) if r != "=" => r,
                    Some(_) => String::new(),
                    None => response!("334 "),
                };
                let Some(decoded) = self.decode(io, &encoded).await? else {
                    return Ok(true);
                };
                let mut parts = decoded.split(|&b| b == 0);
                let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
                let (Some(user), Some(pass)) = (user, pass) else {
                    let r = self.bad_credentials();
                    self.send(io, &r).await?;
                    return Ok(true);
                };
                let (user, pass) = (lossy(user), lossy(pass));
                self.check_password(io, &user, &pass).await?;
            }
            "LOGIN" => {
                let user_b64 = match initial {
                    Some(r) => r,
                    None => response!("334 VXNlcm5hbWU6"),
                };
                let Some(user) = self.decode(io, &user_b64).await? else {
                    return Ok(true);
                };
                let pass_b64 = response!("334 UGFzc3dvcmQ6");
                let Some(pass) = self.decode(io, &pass_b64).await? else {
                    return Ok(true);
                };
                self.check_password(io, &lossy(&user), &lossy(&pass))
                    .await?;
            }
            "XOAUTH2" => {
                let encoded = match initial {
                    Some(r) => r,
                    None => response!("334 "),
                };
                let Some(decoded) = self.decode(io, &encoded).await? else {
                    return Ok(true);
                };
                let decoded = lossy(&decoded);
                let mut user = None;
                let mut token = None;
                for field in decoded.split('\x01') {
                    if let Some(u) = field.strip_prefix("user=") {
                        user = Some(u.to_string());
                    } else if let Some(a) = field.strip_prefix("auth=") {
                        token = a
                            .strip_prefix("Bearer ")
                            .or_else(|| a.strip_prefix("bearer "))
                            .map(str::to_string);
                    }
                }
                let ok = user.as_deref() == Some(self.shared.accounts.username.as_str())
                    && token.as_deref() == Some(self.shared.accounts.oauth_token.as_str());
                if ok {
                    self.authed = true;
                    self.send1(io, "235 2.7.0 Accepted".into()).await?;
                } else {
                    let challenge = B64.encode(
                        r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#,
                    );
                    self.send1(io, format!("334 {challenge}")).await?;
                    if self.auth_line(io).await?.is_none() {
                        return Ok(false);
                    }
                    let r = self.bad_credentials();
                    self.send(io, &r).await?;
                }
            }
            _ => {
                self.send1(
                    io,
                    format!("504 5.7.4 Unrecognized authentication type. {id} - gsmtp"),
                )
                .await?;
            }
        }
        Ok(true)
    }

    /// Sends a 334 prompt and reads the answer: `Some(Err(()))` if the client cancelled with
    /// `*` (already answered with 501), `None` if it went away.
    async fn next_response<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        prompt: &str,
    ) -> io::Result<Option<Result<String, ()>>> {
        self.send1(io, prompt.to_string()).await?;
        let Some(line) = self.auth_line(io).await? else {
            return Ok(None);
        };
        if line == "*" {
            let id = self.id();
            self.send1(
                io,
                format!("501 5.7.0 Authentication aborted. {id} - gsmtp"),
            )
            .await?;
            return Ok(Some(Err(())));
        }
        Ok(Some(Ok(line)))
    }

    /// Base64-decodes an AUTH payload, answering 501 itself when it is not base64.
    async fn decode<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        encoded: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        match B64.decode(encoded.trim()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(_) => {
                let id = self.id();
                self.send1(io, format!("501 5.5.2 Cannot Decode response {id} - gsmtp"))
                    .await?;
                Ok(None)
            }
        }
    }

    async fn check_password<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        user: &str,
        pass: &str,
    ) -> io::Result<()> {
        let accounts = &self.shared.accounts;
        // Compared exactly: Gmail shows app passwords in groups of four, and stripping the
        // spaces is the client's job.
        if user == accounts.username && pass == accounts.app_password {
            self.authed = true;
            self.send1(io, "235 2.7.0 Accepted".into()).await
        } else if user == accounts.username && pass == accounts.account_password {
            let id = self.id();
            let reply = vec![
                "534-5.7.9 Application-specific password required. For more information, go to"
                    .to_string(),
                format!(
                    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"
                ),
            ];
            self.send(io, &reply).await
        } else {
            let r = self.bad_credentials();
            self.send(io, &r).await
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
