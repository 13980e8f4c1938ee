//! `cargo bench --bench e2e`: the release binary end to end against real peers on loopback —
//! Mosquitto, the Gmail-like TLS SMTP server and a Frigate-like HTTP server (the same ones
//! the integration tests use) — and the same burst through mqttwarn's smtp service when
//! `mqttwarn` is installed (`pip install mqttwarn`).
//!
//! Scenarios, each on fresh servers:
//! - **start**: process spawn → `mqtt: subscribed`, and resident memory once idle;
//! - **latency**: one event at a time, MQTT publish → the SMTP server's `250` after DATA, for
//!   a 1080p snapshot fetched over HTTP and for a 1080p snapshot inside the MQTT payload;
//! - **burst**: 1,000 events on 100 cameras published back to back, limits off → mails/s
//!   until the last one is accepted; text-only (what mqttwarn sends) and with 1080p pictures;
//! - **storm**: 10,000 events in 10 s on 50 cameras with a one-mail-per-minute cooldown →
//!   exactly 50 mails, then one digest per camera covering every other event; the decision
//!   backlog and memory are sampled while it runs.
//!
//! Prints one Markdown table; docs/performance.md reproduces it. The figures
//! are wall-clock times on whatever else the machine is doing: run it on a quiet machine.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    check_pictures, machine, mqttwarn_installed, ms, tail, wait_for_count, wait_for_log, Mqttwarn,
    Publisher, PATIENCE,
};
use support::daemon::{Daemon, BIN};
use support::rig::{self, Rig};
use support::{free_port, images, smtp};

/// Bound on any single wait; a scenario that needs longer is broken, not slow.
const LATENCY_SAMPLES: usize = 300;
const LATENCY_WARMUP: usize = 10;
const BURST_EVENTS: usize = 1_000;
const BURST_CAMERAS: usize = 100;
const STORM_EVENTS: usize = 10_000;
const STORM_CAMERAS: usize = 50;
const STORM_SECONDS: u64 = 10;

fn main() {
    support::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    // `cargo bench --bench e2e -- storm` runs one group: start, latency, burst, storm.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |group: &str| only.as_deref().is_none_or(|o| o == group);
    println!("{}", machine());
    println!(
        "snapshots: 1920×1080 q85 4:2:0 camera-like JPEG, {} KB; mailed at the default 1280 px",
        images::camera_jpeg(1920, 1080, 85).len() / 1000
    );
    let mut rows = Table::default();

    if wanted("start") {
        let start = start_and_idle(Path::new(BIN)).await;
        rows.add(
            "start → subscribed (median of 5)",
            ms(start.subscribed),
            "",
            "",
        );
        rows.add(
            "idle RSS after start, max of 5 (anonymous part)",
            format!("{} ({})", mb(start.idle_rss), mb(start.idle_anon)),
            "",
            "≤ 10 MB",
        );
        match static_build() {
            Ok(bin) => {
                let start = start_and_idle(&bin).await;
                rows.add(
                    "static musl build (Docker image, add-on): start → subscribed; idle RSS (anonymous part)",
                    format!(
                        "{}; {} ({})",
                        ms(start.subscribed),
                        mb(start.idle_rss),
                        mb(start.idle_anon)
                    ),
                    "",
                    "≤ 10 MB",
                );
            }
            Err(why) => println!("static musl build not measured: {why}"),
        }
    }

    if wanted("latency") {
        for (name, kind) in [
            ("event → 250, 1080p over HTTP", Snapshot::Http),
            ("event → 250, 1080p in the payload", Snapshot::Payload),
        ] {
            let lat = latency(kind).await;
            rows.add(
                &format!("{name}: p50 / p95 / p99"),
                format!(
                    "{} / {} / {}",
                    ms(lat.p(0.50)),
                    ms(lat.p(0.95)),
                    ms(lat.p(0.99))
                ),
                "",
                "p50 ≤ 15 ms, p99 ≤ 50 ms",
            );
        }
    }

    if wanted("burst") {
        let text = burst(Snapshot::None).await;
        let peer = match mqttwarn_unavailable() {
            None => Some(mqttwarn_burst().await),
            Some(why) => {
                println!("no side-by-side figure: {why}");
                None
            }
        };
        let ratio = |ours: f64| match peer {
            Some(theirs) => format!("{:.1}×", ours / theirs),
            None => "—".into(),
        };
        rows.add(
            "burst 1,000 events / 100 cameras, text mails",
            rate(text),
            &peer.map(rate).unwrap_or_else(|| "—".into()),
            &format!("{} (target ≥ 20×)", ratio(text)),
        );
        let pictures = burst(Snapshot::Http).await;
        rows.add(
            "burst 1,000 events / 100 cameras, 1080p pictures",
            rate(pictures),
            "(sends no pictures)",
            "",
        );
    }

    if wanted("storm") {
        let s = storm().await;
        rows.add(
            "storm 10,000 events / 10 s / 50 cameras, 1 per min",
            format!(
                "{} mails + {} digests covering {} events",
                s.mails, s.digests, s.digested
            ),
            "",
            "exactly 50 + 50 covering 9,950",
        );
        rows.add(
            "storm: decisions behind publishes (max / at the end)",
            format!(
                "{} / {} events; all decided {} after the last publish",
                s.max_backlog,
                s.end_backlog,
                ms(s.drain)
            ),
            "",
            "no growing backlog",
        );
        rows.add(
            "storm: peak RSS (anonymous part, sampled)",
            format!("{} ({})", mb(s.peak_rss), mb(s.peak_anon)),
            "",
            "≤ 40 MB",
        );
    }

    println!();
    rows.print();
}

// ---------------------------------------------------------------------------------------
// Scenarios

struct Start {
    subscribed: Duration,
    idle_rss: u64,
    idle_anon: u64,
}

async fn start_and_idle(bin: &Path) -> Start {
    let r = rig::start(1920, 1080).await;
    let mut times = Vec::new();
    let mut rss = 0;
    let mut anon = 0;
    for _ in 0..5 {
        let began = Instant::now();
        let mut d = daemon_of(bin, &config(&r, ""), &[]);
        let subscribed = wait_for_log(&d, "mqtt: subscribed").await;
        times.push(subscribed - began);
        // Idle means after the start-up work is done: give it a moment with nothing to do.
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss = rss.max(status_kb(&d, "VmRSS") * 1024);
        anon = anon.max(status_kb(&d, "RssAnon") * 1024);
        d.terminate();
        d.wait_exit(PATIENCE).await;
    }
    times.sort();
    Start {
        subscribed: times[times.len() / 2],
        idle_rss: rss,
        idle_anon: anon,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Snapshot {
    /// No picture: a text-only mail, what mqttwarn sends.
    None,
    /// A Frigate event; the picture comes from Frigate's HTTP API.
    Http,
    /// The JPEG itself on Frigate's snapshot topic.
    Payload,
}

/// Topic and payload of event `n` on `camera` (the JPEG is for in-payload pictures).
type MakeEvent = fn(&str, usize, &[u8]) -> (String, Vec<u8>);

/// A source section and how its events look.
fn scenario(kind: Snapshot) -> (&'static str, MakeEvent) {
    match kind {
        Snapshot::None => (
            "sources:\n  - kind: mqtt\n    topic: bench/+\n",
            |camera, n, _| {
                (
                    format!("bench/{camera}"),
                    format!("motion {n}").into_bytes(),
                )
            },
        ),
        Snapshot::Http => ("", |camera, n, _| {
            (
                "frigate/events".into(),
                rig::frigate_event(camera, n).into_bytes(),
            )
        }),
        Snapshot::Payload => (
            "sources:\n  - kind: frigate_snapshot\n",
            |camera, _, jpeg| (format!("frigate/{camera}/person/snapshot"), jpeg.to_vec()),
        ),
    }
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn p(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    }
}

/// Fresh servers and a subscribed daemon with limits off, for the latency and burst runs.
struct Run {
    r: Rig,
    d: Daemon,
    publisher: Publisher,
    event: MakeEvent,
    jpeg: Vec<u8>,
}

impl Run {
    async fn start(kind: Snapshot) -> Run {
        let r = rig::start(1920, 1080).await;
        let (sources, event) = scenario(kind);
        let d = daemon(&config(&r, sources), &LIMITS_OFF);
        wait_for_log(&d, "mqtt: subscribed").await;
        let publisher = Publisher::connect(r.broker.port).await;
        Run {
            r,
            d,
            publisher,
            event,
            jpeg: images::camera_jpeg(1920, 1080, 85),
        }
    }
}

/// One event at a time: publish, wait for the 250, take the server's acceptance time.
async fn latency(kind: Snapshot) -> Latencies {
    let Run {
        r,
        d,
        publisher,
        event,
        jpeg,
    } = Run::start(kind).await;
    let smtp = &r.smtp;
    let mut samples = Vec::new();
    for n in 0..LATENCY_WARMUP + LATENCY_SAMPLES {
        let (topic, payload) = event(&format!("cam{}", n % 4), n, &jpeg);
        let sent = Instant::now();
        publisher.publish(&topic, payload).await;
        wait_for_count(smtp, n + 1, &d).await;
        let accepted = smtp.state.lock().unwrap().messages[n].accepted_at;
        if n >= LATENCY_WARMUP {
            samples.push(accepted - sent);
        }
    }
    check_pictures(smtp, kind != Snapshot::None);
    Latencies(samples)
}

/// 1,000 events on 100 cameras, back to back; mails per second from the first publish to
/// the last 250.
async fn burst(kind: Snapshot) -> f64 {
    let Run {
        r,
        d,
        publisher,
        event,
        jpeg,
    } = Run::start(kind).await;
    let smtp = &r.smtp;
    let messages: Vec<_> = (0..BURST_EVENTS)
        .map(|n| event(&format!("cam{:03}", n % BURST_CAMERAS), n, &jpeg))
        .collect();
    let began = Instant::now();
    for (topic, payload) in messages {
        publisher.publish(&topic, payload).await;
    }
    wait_for_count(smtp, BURST_EVENTS, &d).await;
    check_pictures(smtp, kind != Snapshot::None);
    let last = *smtp.accepted_times().last().expect("mails arrived");
    BURST_EVENTS as f64 / (last - began).as_secs_f64()
}

struct Storm {
    mails: usize,
    digests: usize,
    /// Events the digests say they cover.
    digested: usize,
    max_backlog: u64,
    end_backlog: u64,
    drain: Duration,
    peak_rss: u64,
    /// Highest anonymous RSS seen while sampling (a lower bound of the true peak).
    peak_anon: u64,
}

async fn storm() -> Storm {
    let r = rig::start(1920, 1080).await;
    let smtp = &r.smtp;
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let envs = [
        ("SNAPMAIL__RATE_LIMIT__COOLDOWN", "1m"),
        ("SNAPMAIL__DAILY_LIMIT", "100000"),
        ("SNAPMAIL__HTTP__LISTEN", listen.as_str()),
        ("RUST_LOG", "info"),
    ];
    let d = daemon(&config(&r, ""), &envs);
    wait_for_log(&d, "mqtt: subscribed").await;
    let publisher = Publisher::connect(r.broker.port).await;
    let metrics = format!("http://{listen}/metrics");

    let per_tick = STORM_EVENTS / (STORM_SECONDS as usize * 100);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut max_backlog = 0;
    // RSS counts the binary's mapped pages too (about 10 MB of it at idle); the anonymous
    // part is the daemon's own memory, sampled with the backlog.
    let mut peak_anon = 0;
    let mut last_sample = Instant::now();
    let mut n = 0;
    while n < STORM_EVENTS {
        tick.tick().await;
        for _ in 0..per_tick {
            let camera = format!("cam{:02}", n % STORM_CAMERAS);
            publisher
                .publish(
                    "frigate/events",
                    rig::frigate_event(&camera, n).into_bytes(),
                )
                .await;
            n += 1;
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            last_sample = Instant::now();
            let decided = counter_sum(&metrics, "snapmail_decisions_total").await;
            max_backlog = max_backlog.max((n as u64).saturating_sub(decided));
            peak_anon = peak_anon.max(status_kb(&d, "RssAnon") * 1024);
        }
    }
    let published = Instant::now();
    let end_backlog =
        (n as u64).saturating_sub(counter_sum(&metrics, "snapmail_decisions_total").await);
    loop {
        if counter_sum(&metrics, "snapmail_decisions_total").await >= STORM_EVENTS as u64 {
            break;
        }
        assert!(
            published.elapsed() < PATIENCE,
            "storm: not every event was decided; the log:\n{}",
            tail(&d)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = published.elapsed();
    // Each camera: its first event mails, the other 199 wait for the cooldown and go out
    // as one digest a minute later.
    wait_for_count(smtp, 2 * STORM_CAMERAS, &d).await;
    let peak_rss = status_kb(&d, "VmHWM") * 1024;
    let peak_anon = peak_anon.max(status_kb(&d, "RssAnon") * 1024);
    let mails = smtp.messages();
    let digests: Vec<_> = mails
        .iter()
        .filter_map(|m| {
            let parsed = mail_parser::MessageParser::default().parse(&m.data)?;
            digest_count(parsed.subject()?)
        })
        .collect();
    Storm {
        mails: mails.len() - digests.len(),
        digests: digests.len(),
        digested: digests.iter().sum(),
        max_backlog,
        end_backlog,
        drain,
        peak_rss,
        peak_anon,
    }
}

/// The same burst, text only, through mqttwarn's smtp service ([`Mqttwarn`]): the same
/// broker build and SMTP server.
async fn mqttwarn_burst() -> f64 {
    let m = Mqttwarn::start(
        smtp::SmtpServer::builder().starttls_port(25).start().await,
        "localhost",
    )
    .await;
    let publisher = Publisher::connect(m.broker.port).await;
    let (_, event) = scenario(Snapshot::None);
    let began = Instant::now();
    for n in 0..BURST_EVENTS {
        let (topic, payload) = event(&format!("cam{:03}", n % BURST_CAMERAS), n, &[]);
        publisher.publish(&topic, payload).await;
    }
    m.wait_for(BURST_EVENTS).await;
    let last = *m.smtp.accepted_times().iter().max().expect("mails arrived");
    BURST_EVENTS as f64 / (last - began).as_secs_f64()
}

/// No cooldown, no daily budget, no digests: every event is a mail.
const LIMITS_OFF: [(&str, &str); 4] = [
    ("SNAPMAIL__RATE_LIMIT__COOLDOWN", "0s"),
    ("SNAPMAIL__DAILY_LIMIT", "1000000"),
    ("SNAPMAIL__DIGEST__ENABLED", "false"),
    ("RUST_LOG", "info"),
];

/// The test rig's configuration plus a `sources:` section.
fn config(r: &Rig, sources: &str) -> String {
    format!("{}{sources}", r.config())
}

fn daemon(config: &str, envs: &[(&str, &str)]) -> Daemon {
    daemon_of(Path::new(BIN), config, envs)
}

fn daemon_of(bin: &Path, config: &str, envs: &[(&str, &str)]) -> Daemon {
    // A known Frigate version: snapshots are asked for at mail size, no /api/version probe.
    let mut all = vec![("RUST_LOG", "info"), ("SNAPMAIL__FRIGATE__VERSION", "0.14")];
    all.extend_from_slice(envs);
    Daemon::start_binary(bin, Some(config), &all)
}

/// The static musl binary that the Docker image and the Home Assistant add-on ship, built
/// beside this one by `cargo build --release --target <arch>-unknown-linux-musl --bin
/// snapmail` (docker/Dockerfile's command). It is measured only when it exists and is newer
/// than every source file and the manifest and lock file, so a stale build never stands in
/// for the current code.
fn static_build() -> Result<PathBuf, String> {
    let target_dir = Path::new(BIN)
        .ancestors()
        .nth(2)
        .ok_or("no target directory")?;
    let triple = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let bin = target_dir.join(&triple).join("release/snapmail");
    let build = format!("cargo build --release --target {triple} --bin snapmail");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|_| format!("{} not found ({build})", bin.display()))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changed = ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| newest_change(&root.join(p)))
        .max()
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    if changed > built {
        return Err(format!(
            "{} is older than the sources; rebuild it ({build})",
            bin.display()
        ));
    }
    Ok(bin)
}

/// The latest modification time of `path`, or of any file under it when it is a directory.
fn newest_change(path: &Path) -> std::time::SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| newest_change(&entry.path()))
        .fold(own, std::cmp::Ord::max)
}

/// `"199 more events on cam07 since …"` → 199.
fn digest_count(subject: &str) -> Option<usize> {
    let (n, rest) = subject.split_once(' ')?;
    rest.starts_with("more event").then(|| n.parse().ok())?
}

/// Sum of every sample of a counter on the daemon's `/metrics`.
async fn counter_sum(url: &str, name: &str) -> u64 {
    let body = reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics");
    let text = body.text().await.expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(d: &Daemon, field: &str) -> u64 {
    let pid = d.pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Why the mqttwarn figure cannot be taken here, if it cannot.
fn mqttwarn_unavailable() -> Option<String> {
    if !mqttwarn_installed() {
        return Some("mqttwarn is not installed (pip install mqttwarn)".into());
    }
    match std::net::TcpListener::bind("127.0.0.1:25") {
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot listen on 127.0.0.1:25 for it ({e}); run as root"
        )),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rate(per_s: f64) -> String {
    format!("{per_s:.0} mails/s")
}

#[derive(Default)]
struct Table(Vec<[String; 4]>);

impl Table {
    fn add(&mut self, what: &str, ours: impl Into<String>, theirs: &str, note: &str) {
        self.0
            .push([what.into(), ours.into(), theirs.into(), note.into()]);
    }

    fn print(&self) {
        println!("| scenario | snapmail | mqttwarn | ratio / target |");
        println!("|---|---|---|---|");
        for [a, b, c, d] in &self.0 {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
}
