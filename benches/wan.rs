//! `cargo bench --bench wan`: motion to inbox over a wide-area link, snapmail against mqttwarn
//! in the same run. Needs root, `/dev/net/tun` and iproute2 (it says which is missing), plus
//! Mosquitto; mqttwarn (`pip install mqttwarn`) for its column.
//!
//! The Gmail-like SMTP server (`tests/support/smtp.rs`, offering PIPELINING and CHUNKING)
//! listens across a delay line (`tests/support/wan.rs`: a network namespace behind two TUN
//! devices, 20 ms each way, so 40 ms round trips like a home connection to Gmail). Mosquitto,
//! the Frigate-like HTTP server (1920×1080 camera-like JPEG) and the release binary run here,
//! as they do beside the cameras. mqttwarn mails through the same link to a second such
//! server on port 25 of the namespace.
//!
//! Scenarios, each on fresh servers and a fresh daemon, limits off:
//! - **sporadic**: no SMTP session when the event comes. The server closes sessions idle for
//!   3 s with Gmail's `451 4.4.2 Timeout`, as Gmail does after its own (unpublished) idle
//!   limit, and events come 6.5 s apart; the daemon then has only a closed session, which it
//!   checks before use, so each mail opens a new one (as after minutes of quiet);
//! - **warm**: events 2 s apart on a live session (the first two are not counted);
//! - **burst**: 100 events on 100 cameras published back to back → mails/s until the last
//!   250.
//!
//! snapmail sends a text-only mail and a mail with the 1080p snapshot (fetched over HTTP,
//! mailed at the default 1280 px); mqttwarn sends text. Latency is MQTT publish → the
//! server's 250 for the message. mqttwarn opens a new session for every mail, so its
//! sporadic and warm figures are one series (taken 2 s apart) shown in both rows.
//!
//! **Round trips, counted from the server's log** (`smtp::Step`), per mail: 1 for the TCP
//! handshake of a new connection; 1 for STARTTLS; the TLS handshake's own (1 for TLS 1.3);
//! and every time the client's next bytes at a command boundary arrived at least half a
//! round trip after the server had flushed its replies (the client had waited for them;
//! pipelined bytes arrive sooner). The wait that begins with the previous mail's 250, and
//! a keep-alive NOOP with the waits around it, are idle time between mails and not counted.
//! Separately, *body rounds*: waits of at least half a round trip inside a message body,
//! which are TCP's (slow start), not SMTP's.
//! Publish → 250 ≈ local work + ½ RTT (the SYN's way out) + round trips × RTT + body rounds ×
//! RTT.
//!
//! `cargo bench --bench wan -- sporadic` runs one group (`link`, `sporadic`, `warm`,
//! `burst`); `WAN_SAMPLES` sets the samples per series (default 20); `WAN_VERBOSE=1` prints
//! every sample with its round trips. Prints one Markdown table; docs/performance-wan.md
//! explains it.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    check_pictures, machine, mqttwarn_installed, ms, wait_for_count, wait_for_log, Mqttwarn,
    Publisher,
};
use support::daemon::{Daemon, BIN};
use support::rig::{self, Rig};
use support::smtp::{SmtpServer, Step};
use support::wan::Link;
use support::{http, images, mosquitto};

const ONE_WAY: Duration = Duration::from_millis(20);
const SPORADIC_IDLE_CLOSE: Duration = Duration::from_secs(3);
const SPORADIC_GAP: Duration = Duration::from_millis(6_500);
const WARM_GAP: Duration = Duration::from_secs(2);
const WARM_UNCOUNTED: usize = 2;
const BURST_EVENTS: usize = 100;
const BURST_CAMERAS: usize = 100;

fn main() {
    if let Some(why) = Link::unavailable() {
        eprintln!("wan bench: cannot build the delay line: {why}");
        std::process::exit(1);
    }
    support::install_crypto();
    let link = Link::start(ONE_WAY).unwrap_or_else(|e| {
        eprintln!("wan bench: cannot build the delay line: {e}");
        std::process::exit(1);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(&link));
}

async fn run(link: &Link) {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    let samples: usize = std::env::var("WAN_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(2);
    println!("{}", machine());
    println!(
        "snapshot: 1920×1080 q85 4:2:0 camera-like JPEG, {} KB, mailed at the default 1280 px",
        images::camera_jpeg(1920, 1080, 85).len() / 1000
    );
    let warn = mqttwarn_unavailable();
    if let Some(why) = &warn {
        println!("no mqttwarn column: {why}");
    }
    let rtt = link.rtt();
    let mut t = Table::new(rtt);

    if wanted("link") {
        println!("{}", link_check(link));
    }
    if wanted("body") {
        body_rounds(link).await;
    }

    // mqttwarn's one latency series serves the sporadic and the warm rows.
    let peer = if warn.is_none() && (wanted("sporadic") || wanted("warm")) {
        Some(mqttwarn_latency(link, samples).await)
    } else {
        None
    };

    if wanted("sporadic") {
        let text = latency(link, Kind::Text, Spacing::Sporadic, samples).await;
        let pic = latency(link, Kind::Picture, Spacing::Sporadic, samples).await;
        t.latency("sporadic, text mail", &text, peer.as_ref(), "");
        t.latency(
            "sporadic, 1080p picture mail (mqttwarn: text)",
            &pic,
            peer.as_ref(),
            "≤ 300 ms (6 RTT + fetch); ≥ 1.6× faster than mqttwarn's text",
        );
    }
    if wanted("warm") {
        let text = latency(link, Kind::Text, Spacing::Warm, samples).await;
        let pic = latency(link, Kind::Picture, Spacing::Warm, samples).await;
        t.latency(
            "warm (2 s apart), text mail",
            &text,
            peer.as_ref(),
            "≤ 2 RTT + local work",
        );
        t.latency(
            "warm (2 s apart), 1080p picture mail (mqttwarn: text)",
            &pic,
            peer.as_ref(),
            "",
        );
    }
    if wanted("burst") {
        let text = burst(link, Kind::Text).await;
        let peer = if warn.is_none() {
            Some(mqttwarn_burst(link).await)
        } else {
            None
        };
        t.burst(
            "burst 100 events / 100 cameras, text mails",
            &text,
            peer.as_ref(),
            "≥ 10× mqttwarn",
        );
        let pic = burst(link, Kind::Picture).await;
        t.burst(
            "burst 100 events / 100 cameras, 1080p pictures (mqttwarn: text)",
            &pic,
            peer.as_ref(),
            "",
        );
    }
    println!();
    t.print();
}

// ---------------------------------------------------------------------------------------
// The link itself

/// Checks the delay line does what it says and measures what it sustains.
fn link_check(link: &Link) -> String {
    let listener = link
        .bind_tcp(SocketAddr::from((link.far(), 0)))
        .expect("listen inside the namespace");
    listener.set_nonblocking(false).expect("blocking listener");
    let addr = listener.local_addr().expect("local addr");
    const PINGS: usize = 20;
    const BULK: usize = 64 << 20;
    let far = std::thread::spawn(move || {
        for _ in 0..PINGS {
            let (mut s, _) = listener.accept().expect("accept ping");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("ping byte");
            s.write_all(&b).expect("pong");
        }
        let (mut s, _) = listener.accept().expect("accept bulk");
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        while total < BULK {
            let n = s.read(&mut buf).expect("bulk read");
            assert!(n > 0, "bulk stream ended after {total} bytes");
            total += n;
        }
        s.write_all(b"k").expect("bulk ack");
    });
    let mut connects = Vec::new();
    let mut echoes = Vec::new();
    for _ in 0..PINGS {
        let began = Instant::now();
        let mut c = TcpStream::connect(addr).expect("connect across the link");
        connects.push(began.elapsed());
        c.set_nodelay(true).expect("nodelay");
        let began = Instant::now();
        c.write_all(b"x").expect("ping");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).expect("pong");
        echoes.push(began.elapsed());
    }
    let packets_before = link.counters.packets.load(Ordering::Relaxed);
    let mut c = TcpStream::connect(addr).expect("connect bulk");
    let chunk = vec![0x5au8; 1 << 20];
    let began = Instant::now();
    for _ in 0..BULK >> 20 {
        c.write_all(&chunk).expect("bulk write");
    }
    let mut b = [0u8; 1];
    c.read_exact(&mut b).expect("bulk ack");
    let bulk = began.elapsed();
    far.join().expect("far end");
    let packets = link.counters.packets.load(Ordering::Relaxed) - packets_before;
    connects.sort();
    echoes.sort();
    let drops = link
        .kernel_drops()
        .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
    let rtt = link.rtt();
    let median = connects[PINGS / 2];
    assert!(
        median >= rtt && median < rtt + Duration::from_millis(10),
        "the link's round trip is {median:?}, not {rtt:?}"
    );
    format!(
        "delay line: {} ms each way; TCP connect {} median (min {}, max {}); 1-byte echo {} median \
         (max {}); one TCP stream sustains {:.0} MB/s ({:.0} kpackets/s both ways); releases at \
         most {} µs late; packets dropped by the kernel queues: {drops}; most packets held in one \
         direction: {}",
        ONE_WAY.as_millis(),
        ms(median),
        ms(connects[0]),
        ms(connects[PINGS - 1]),
        ms(echoes[PINGS / 2]),
        ms(echoes[PINGS - 1]),
        BULK as f64 / bulk.as_secs_f64() / 1e6,
        packets as f64 / bulk.as_secs_f64() / 1e3,
        link.counters.max_late_us.load(Ordering::Relaxed),
        link.counters.max_queued.load(Ordering::Relaxed),
    )
}

/// Body bytes against TCP rounds, measured: a pipelined MAIL, RCPT and `BDAT n LAST` with
/// `n` bytes, on a new session and on one idle for 2 s (Linux restarts slow start after an
/// idle spell longer than the retransmission timeout).
async fn body_rounds(link: &Link) {
    const SIZES_KB: [usize; 10] = [10, 40, 60, 80, 100, 120, 150, 180, 220, 300];
    let smtp = SmtpServer::builder()
        .listen_on(IpAddr::V4(link.far()), link.binder())
        .start()
        .await;
    let rtt = link.rtt();
    println!("\nbody bytes → TCP rounds inside the body (server's log) and BDAT → 250 in RTT:");
    println!("| body | new session | idle 2 s |\n|---|---|---|");
    for kb in SIZES_KB {
        let mut cells = Vec::new();
        for idle in [None, Some(Duration::from_secs(2))] {
            let mut c = raw::Session::open(&smtp).await;
            if let Some(idle) = idle {
                c.transaction(1).await;
                tokio::time::sleep(idle).await;
            }
            let took = c.transaction(kb * 1000).await;
            let trips = count_trips(&smtp, rtt);
            let body = trips.last().map_or(0, |t| t.body_rounds);
            cells.push(format!(
                "{body} rounds, {:.1} RTT",
                took.as_secs_f64() / rtt.as_secs_f64()
            ));
        }
        println!("| {kb} KB | {} | {} |", cells[0], cells[1]);
    }
}

/// A hand-driven pipelining SMTP client for [`body_rounds`].
mod raw {
    use std::time::{Duration, Instant};

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use tokio::io::{AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    use super::SmtpServer;

    pub struct Session {
        io: BufReader<TlsStream<TcpStream>>,
    }

    impl Session {
        /// Connected, TLS, EHLO and AUTH done, each waited for.
        pub async fn open(server: &SmtpServer) -> Session {
            let tcp = TcpStream::connect((server.ip, server.starttls_port))
                .await
                .expect("connect across the link");
            tcp.set_nodelay(true).expect("nodelay");
            let mut plain = BufReader::new(tcp);
            reply(&mut plain).await;
            command(&mut plain, "EHLO bench.example\r\n", 1).await;
            command(&mut plain, "STARTTLS\r\n", 1).await;
            let name = rustls::pki_types::ServerName::from(server.ip);
            let tls = server
                .tls_connector()
                .connect(name, plain.into_inner())
                .await
                .expect("TLS");
            let mut io = BufReader::new(tls);
            command(&mut io, "EHLO bench.example\r\n", 1).await;
            let auth = B64.encode("\0cam@example.com\0abcdefghijklmnop");
            command(&mut io, &format!("AUTH PLAIN {auth}\r\n"), 1).await;
            Session { io }
        }

        /// MAIL, RCPT and BDAT LAST with `size` bytes of body in one write; time to the last
        /// reply.
        pub async fn transaction(&mut self, size: usize) -> Duration {
            let mut group = format!(
                "MAIL FROM:<cam@example.com>\r\nRCPT TO:<me@example.com>\r\nBDAT {size} LAST\r\n"
            )
            .into_bytes();
            // Lines of 76 characters, as base64 bodies are (a server refuses lines over 998
            // octets).
            let line = [[b'A'; 76].as_slice(), b"\r\n"].concat();
            group.extend(line.iter().cycle().take(size));
            let began = Instant::now();
            let tls = self.io.get_mut();
            tls.write_all(&group).await.expect("send");
            // TLS data the socket could not take yet waits in rustls until flushed.
            tls.flush().await.expect("send");
            for _ in 0..3 {
                let r = reply(&mut self.io).await;
                assert!(r.starts_with('2'), "{r}");
            }
            began.elapsed()
        }
    }

    async fn command<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        io: &mut BufReader<S>,
        line: &str,
        replies: usize,
    ) {
        io.get_mut().write_all(line.as_bytes()).await.expect("send");
        io.get_mut().flush().await.expect("send");
        for _ in 0..replies {
            let r = reply(io).await;
            assert!(r.starts_with('2'), "{line:?}: {r}");
        }
    }

    /// The last line of one reply.
    async fn reply<S: tokio::io::AsyncRead + Unpin>(io: &mut BufReader<S>) -> String {
        let mut lines = crate::support::smtp::read_reply(io).await;
        lines.pop().expect("a reply has a line")
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Picture,
}

#[derive(Clone, Copy, PartialEq)]
enum Spacing {
    Sporadic,
    Warm,
}

/// Latencies and round-trip counts of one series.
#[derive(Clone, Default)]
struct Series {
    latency: Vec<Duration>,
    trips: Vec<Trips>,
    /// Mail size on the wire (DATA), median.
    bytes: usize,
    /// TCP connections the server accepted for the series.
    connections: usize,
}

impl Series {
    fn p(&self, q: f64) -> Duration {
        let mut v = self.latency.clone();
        v.sort();
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    }

    /// The most common round trips (count and body rounds) of the series' mails.
    fn typical_trips(&self) -> Option<Trips> {
        let mut counts: Vec<(Trips, usize)> = Vec::new();
        for t in &self.trips {
            match counts
                .iter_mut()
                .find(|(k, _)| k.what == t.what && k.body_rounds == t.body_rounds)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((t.clone(), 1)),
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(t, _)| t)
    }
}

/// The counted round trips of one mail (see the module doc).
#[derive(Clone, Default, Debug)]
struct Trips {
    /// What each round trip waited for: `TCP`, `STARTTLS`, `TLS`, or the reply code.
    what: Vec<String>,
    body_rounds: usize,
}

impl Trips {
    fn total(&self) -> usize {
        self.what.len()
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}){}",
            self.total(),
            self.what.join(" "),
            if self.body_rounds > 0 {
                format!(" + {} body", self.body_rounds)
            } else {
                String::new()
            }
        )
    }
}

/// The round trips of every accepted message, by message index.
fn count_trips(smtp: &SmtpServer, rtt: Duration) -> Vec<Trips> {
    let mut out = vec![Trips::default(); smtp.count()];
    for log in smtp.conn_logs() {
        let mut current = Trips {
            what: vec!["TCP".into()],
            body_rounds: 0,
        };
        // The wait that begins with a 250 to a message, or with the reply to a keep-alive
        // NOOP, is idle time between mails, not a round trip of either.
        let mut idle_wait = false;
        let mut counted_wait = false;
        for (_, step) in log.steps {
            let waited_for_reply = matches!(step, Step::Reply { .. });
            match step {
                Step::Reply { waited, after } => {
                    counted_wait = false;
                    if idle_wait {
                        idle_wait = false;
                    } else if waited >= rtt / 2 {
                        current.what.push(after.chars().take(3).collect());
                        counted_wait = true;
                    }
                }
                Step::StartTls => current.what.push("STARTTLS".into()),
                Step::Tls { round_trips, .. } => {
                    for _ in 0..round_trips {
                        current.what.push("TLS".into());
                    }
                }
                Step::Stall { waited } => {
                    if waited >= rtt / 2 {
                        current.body_rounds += 1;
                    }
                }
                Step::Accepted { message } => {
                    if let Some(slot) = out.get_mut(message) {
                        *slot = std::mem::take(&mut current);
                    }
                    idle_wait = true;
                }
                Step::Noop => {
                    // The NOOP itself came after idle time (a keeper sends it between mails),
                    // so the wait just counted before it was not for a mail either.
                    if counted_wait {
                        current.what.pop();
                    }
                    idle_wait = true;
                }
                Step::IdleClose => {}
            }
            if !waited_for_reply {
                counted_wait = false;
            }
        }
    }
    out
}

/// The servers of one snapmail run: Mosquitto and Frigate here, SMTP across the link.
async fn rig(link: &Link, idle_close: Option<Duration>) -> Rig {
    let mut smtp = SmtpServer::builder().listen_on(IpAddr::V4(link.far()), link.binder());
    if let Some(idle) = idle_close {
        smtp = smtp.idle_timeout(idle);
    }
    Rig {
        broker: mosquitto::start(),
        smtp: smtp.start().await,
        frigate: http::start(http::frigate(images::camera_jpeg(1920, 1080, 85))).await,
    }
}

fn start_daemon(r: &Rig, far: std::net::Ipv4Addr, kind: Kind) -> Daemon {
    let sources = match kind {
        Kind::Text => "sources:\n  - kind: mqtt\n    topic: bench/+\n",
        Kind::Picture => "",
    };
    let host = far.to_string();
    let envs = [
        ("SNAPMAIL__SMTP__HOST", host.as_str()),
        // A known Frigate version: snapshots are asked for at mail size, no version probe.
        ("SNAPMAIL__FRIGATE__VERSION", "0.14"),
        ("SNAPMAIL__RATE_LIMIT__COOLDOWN", "0s"),
        ("SNAPMAIL__DAILY_LIMIT", "1000000"),
        ("SNAPMAIL__DIGEST__ENABLED", "false"),
        ("RUST_LOG", "info"),
    ];
    Daemon::start_binary(
        Path::new(BIN),
        Some(&format!("{}{sources}", r.config())),
        &envs,
    )
}

fn event(kind: Kind, camera: &str, n: usize) -> (String, Vec<u8>) {
    match kind {
        Kind::Text => (
            format!("bench/{camera}"),
            format!("motion {n}").into_bytes(),
        ),
        Kind::Picture => (
            "frigate/events".into(),
            rig::frigate_event(camera, n).into_bytes(),
        ),
    }
}

/// One event at a time, `spacing` apart: publish → 250, and the round trips of each mail.
async fn latency(link: &Link, kind: Kind, spacing: Spacing, samples: usize) -> Series {
    let (idle_close, gap, uncounted) = match spacing {
        Spacing::Sporadic => (Some(SPORADIC_IDLE_CLOSE), SPORADIC_GAP, 0),
        Spacing::Warm => (None, WARM_GAP, WARM_UNCOUNTED),
    };
    let r = rig(link, idle_close).await;
    let d = start_daemon(&r, link.far(), kind);
    wait_for_log(&d, "mqtt: subscribed").await;
    let publisher = Publisher::connect(r.broker.port).await;
    let mut latencies = Vec::new();
    let mut next = Instant::now();
    for n in 0..uncounted + samples {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let (topic, payload) = event(kind, &format!("cam{}", n % 4), n);
        let sent = Instant::now();
        publisher.publish(&topic, payload).await;
        wait_for_count(&r.smtp, n + 1, &d).await;
        let accepted = r.smtp.state.lock().unwrap().messages[n].accepted_at;
        if n >= uncounted {
            latencies.push(accepted - sent);
        }
    }
    check_pictures(&r.smtp, kind == Kind::Picture);
    let trips = count_trips(&r.smtp, link.rtt());
    if std::env::var_os("WAN_VERBOSE").is_some() {
        for (n, (latency, t)) in latencies.iter().zip(&trips[uncounted..]).enumerate() {
            println!("  sample {n}: {} — {}", ms(*latency), t.describe());
        }
    }
    Series {
        latency: latencies,
        trips: trips[uncounted..].to_vec(),
        bytes: median_size(&r.smtp),
        connections: r.smtp.connections(),
    }
}

struct Burst {
    per_s: f64,
    /// Round trips, sizes and connections of the burst's mails (no latencies).
    trips: Series,
}

impl Burst {
    /// `smtp` has accepted every mail of a burst whose first event was published at `began`.
    fn measured(smtp: &SmtpServer, began: Instant, rtt: Duration) -> Burst {
        let last = *smtp.accepted_times().iter().max().expect("mails arrived");
        Burst {
            per_s: smtp.count() as f64 / (last - began).as_secs_f64(),
            trips: Series {
                latency: Vec::new(),
                trips: count_trips(smtp, rtt),
                bytes: median_size(smtp),
                connections: smtp.connections(),
            },
        }
    }
}

/// 100 events on 100 cameras, back to back: mails per second from the first publish to the
/// last 250.
async fn burst(link: &Link, kind: Kind) -> Burst {
    let r = rig(link, None).await;
    let d = start_daemon(&r, link.far(), kind);
    wait_for_log(&d, "mqtt: subscribed").await;
    let publisher = Publisher::connect(r.broker.port).await;
    let events: Vec<_> = (0..BURST_EVENTS)
        .map(|n| event(kind, &format!("cam{:03}", n % BURST_CAMERAS), n))
        .collect();
    let began = Instant::now();
    for (topic, payload) in events {
        publisher.publish(&topic, payload).await;
    }
    wait_for_count(&r.smtp, BURST_EVENTS, &d).await;
    check_pictures(&r.smtp, kind == Kind::Picture);
    Burst::measured(&r.smtp, began, link.rtt())
}

fn median_size(smtp: &SmtpServer) -> usize {
    let mut sizes: Vec<usize> = smtp.messages().iter().map(|m| m.data.len()).collect();
    sizes.sort();
    sizes.get(sizes.len() / 2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// mqttwarn

/// mqttwarn mailing across the link to a second Gmail-like server on port 25 of the far end
/// (an IP address as the server, which smtplib sends without a TLS server name; the server
/// accepts that).
async fn start_mqttwarn(link: &Link) -> Mqttwarn {
    let smtp = SmtpServer::builder()
        .listen_on(IpAddr::V4(link.far()), link.binder())
        .starttls_port(25)
        .start()
        .await;
    Mqttwarn::start(smtp, &link.far().to_string()).await
}

async fn mqttwarn_latency(link: &Link, samples: usize) -> Series {
    let m = start_mqttwarn(link).await;
    let publisher = Publisher::connect(m.broker.port).await;
    let mut latencies = Vec::new();
    let mut next = Instant::now();
    for n in 0..WARM_UNCOUNTED + samples {
        tokio::time::sleep_until(next.into()).await;
        next += WARM_GAP;
        let (topic, payload) = event(Kind::Text, &format!("cam{}", n % 4), n);
        let sent = Instant::now();
        publisher.publish(&topic, payload).await;
        m.wait_for(n + 1).await;
        let accepted = m.smtp.state.lock().unwrap().messages[n].accepted_at;
        if n >= WARM_UNCOUNTED {
            latencies.push(accepted - sent);
        }
    }
    let trips = count_trips(&m.smtp, link.rtt());
    Series {
        latency: latencies,
        trips: trips[WARM_UNCOUNTED..].to_vec(),
        bytes: median_size(&m.smtp),
        connections: m.smtp.connections(),
    }
}

async fn mqttwarn_burst(link: &Link) -> Burst {
    let m = start_mqttwarn(link).await;
    let publisher = Publisher::connect(m.broker.port).await;
    let began = Instant::now();
    for n in 0..BURST_EVENTS {
        let (topic, payload) = event(Kind::Text, &format!("cam{:03}", n % BURST_CAMERAS), n);
        publisher.publish(&topic, payload).await;
    }
    m.wait_for(BURST_EVENTS).await;
    Burst::measured(&m.smtp, began, link.rtt())
}

/// Why the mqttwarn figures cannot be taken here, if they cannot.
fn mqttwarn_unavailable() -> Option<String> {
    (!mqttwarn_installed()).then(|| "mqttwarn is not installed (pip install mqttwarn)".into())
}

/// The Markdown table: one row per series.
struct Table {
    rtt: Duration,
    rows: Vec<[String; 6]>,
}

impl Table {
    fn new(rtt: Duration) -> Table {
        Table {
            rtt,
            rows: Vec::new(),
        }
    }

    fn in_rtt(&self, d: Duration) -> String {
        format!("{:.1}", d.as_secs_f64() / self.rtt.as_secs_f64())
    }

    fn latency(&mut self, what: &str, ours: &Series, theirs: Option<&Series>, target: &str) {
        let fmt = |s: &Series| {
            format!(
                "{} / {} ({} RTT; {} mails, {} connections)",
                ms(s.p(0.5)),
                ms(s.p(0.95)),
                self.in_rtt(s.p(0.5)),
                s.trips.len(),
                s.connections
            )
        };
        let trips = |s: &Series| {
            s.typical_trips()
                .map_or_else(|| "?".into(), |t| t.describe())
        };
        self.rows.push([
            format!("{what}: median / p95"),
            format!("{}; {} KB", fmt(ours), ours.bytes / 1000),
            theirs.map_or_else(|| "—".into(), fmt),
            theirs.map_or_else(
                || "—".into(),
                |t| format!("{:.2}×", t.p(0.5).as_secs_f64() / ours.p(0.5).as_secs_f64()),
            ),
            format!(
                "{} / {}",
                trips(ours),
                theirs.map_or_else(|| "—".into(), trips)
            ),
            target.into(),
        ]);
    }

    fn burst(&mut self, what: &str, ours: &Burst, theirs: Option<&Burst>, target: &str) {
        let fmt = |b: &Burst| {
            format!(
                "{:.1} mails/s ({} connections)",
                b.per_s, b.trips.connections
            )
        };
        let trips = |b: &Burst| {
            b.trips
                .typical_trips()
                .map_or_else(|| "?".into(), |t| t.describe())
        };
        self.rows.push([
            what.into(),
            format!("{}; {} KB", fmt(ours), ours.trips.bytes / 1000),
            theirs.map_or_else(|| "—".into(), fmt),
            theirs.map_or_else(|| "—".into(), |t| format!("{:.1}×", ours.per_s / t.per_s)),
            format!(
                "{} / {}",
                trips(ours),
                theirs.map_or_else(|| "—".into(), trips)
            ),
            target.into(),
        ]);
    }

    fn print(&self) {
        println!(
            "| scenario ({} ms RTT) | snapmail | mqttwarn | ratio | round trips per mail, most common (snapmail / mqttwarn) | target |",
            self.rtt.as_millis()
        );
        println!("|---|---|---|---|---|---|");
        for [a, b, c, d, e, f] in &self.rows {
            println!("| {a} | {b} | {c} | {d} | {e} | {f} |");
        }
    }
}
