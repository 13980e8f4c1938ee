//! `/healthz`, `/metrics` and `snapmail healthcheck` during a real end-to-end run.

use std::collections::HashMap;
use std::process::Command;

use crate::support::daemon::Daemon;
use crate::support::rig::{self, T};
use crate::support::wait::wait_until;

/// The address the daemon logged for its HTTP listener.
fn http_addr(d: &Daemon) -> String {
    let logs = d.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("/healthz and /metrics on http://"))
        .expect("the daemon logs its HTTP address");
    let start = line.find("http://").unwrap() + "http://".len();
    line[start..].split_whitespace().next().unwrap().to_owned()
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    crate::support::install_crypto();
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Parse the Prometheus text format strictly enough to catch malformed output:
/// `# HELP/TYPE/UNIT/EOF` comments, and `name{labels} value` samples.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    for line in text.lines() {
        if line.starts_with('#') {
            let kind = line.split_whitespace().nth(1).unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels: {line}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        samples.insert(series.to_owned(), v);
    }
    samples
}

fn healthcheck(d: &Daemon, addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snapmail"))
        .arg("healthcheck")
        .arg("--config")
        .arg(d.config_path().unwrap())
        .env("SNAPMAIL__HTTP__LISTEN", addr)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_follow_a_real_run() {
    let r = rig::start(640, 360).await;
    let d = r.daemon(&[]).await;
    let addr = http_addr(&d);

    let (status, body) = get(&addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let out = healthcheck(&d, &addr);
    assert!(out.status.success(), "{out:?}");

    r.frigate_event("driveway", 1).await;
    r.frigate_event("driveway", 2).await; // inside the cooldown
    r.smtp.wait_for_messages(1, T).await;
    d.wait_for_log("suppressed by cooldown", T).await;
    let mut samples = HashMap::new();
    wait_until_async_metrics(&addr, &mut samples).await;
    let get = |k: &str| {
        samples
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {samples:?}"))
    };
    assert_eq!(
        get("snapmail_events_received_total{source=\"frigate_events\",camera=\"driveway\"}"),
        2.0
    );
    assert_eq!(
        get("snapmail_decisions_total{decision=\"mailed\",reason=\"\"}"),
        1.0
    );
    assert_eq!(
        get("snapmail_decisions_total{decision=\"suppressed\",reason=\"cooldown\"}"),
        1.0
    );
    assert_eq!(get("snapmail_smtp_replies_total{code=\"250\"}"), 1.0);
    assert_eq!(get("snapmail_outbox_queued_total"), 1.0);
    assert_eq!(get("snapmail_outbox_depth"), 0.0);
    assert_eq!(get("snapmail_snapshot_fetch_seconds_count"), 1.0);
    assert_eq!(get("snapmail_snapshot_resize_seconds_count"), 1.0);
}

/// Scrape until the sent counter shows the delivered mail (it moves after the 250).
async fn wait_until_async_metrics(addr: &str, samples: &mut HashMap<String, f64>) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        *samples = parse_metrics(&text);
        if samples.get("snapmail_outbox_sent_total") == Some(&1.0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sent counter never reached 1:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_red_when_the_login_is_refused() {
    let r = rig::start(320, 180).await;
    let d = r
        .daemon(&[("SNAPMAIL__SMTP__PASSWORD", "wrongwrongwrongw")])
        .await;
    let addr = http_addr(&d);
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("LOGIN REFUSED", T).await;
    let (status, body) = get(&addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("refused the login"), "{body}");
    let out = healthcheck(&d, &addr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    wait_until("nothing else", std::time::Duration::from_millis(1), || true).await;
}
