//! What the end-to-end benches share: a persistent MQTT publisher, waits on the daemon's log
//! and the SMTP server's count, the check that mails carry pictures when they should,
//! mqttwarn as the baseline, and the machine line printed above every table.
//!
//! Each bench includes `tests/support` as `support` first; this module builds on it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, PublishOptions, QoS};

use crate::support::daemon::Daemon;
use crate::support::free_port;
use crate::support::mosquitto::{self, Mosquitto};
use crate::support::smtp::SmtpServer;

/// How long any one step may take before the bench gives up and prints the log.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// Waits (1 ms polls) for a log line; returns when it was seen.
pub async fn wait_for_log(d: &Daemon, needle: &str) -> Instant {
    let began = Instant::now();
    while d.count_log(needle) == 0 {
        assert!(
            began.elapsed() < PATIENCE,
            "no {needle:?} in the log:\n{}",
            tail(d)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// Waits (1 ms polls) until the server has accepted `n` mails.
pub async fn wait_for_count(smtp: &SmtpServer, n: usize, d: &Daemon) {
    let began = Instant::now();
    while smtp.count() < n {
        assert!(
            began.elapsed() < PATIENCE,
            "{} of {n} mails arrived; the log:\n{}\n--- SMTP transcript ---\n{}",
            smtp.count(),
            tail(d),
            smtp.transcript()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every mail carries a picture exactly when the scenario has one: a fast run that mailed
/// without pictures would be a wrong run.
pub fn check_pictures(smtp: &SmtpServer, with_pictures: bool) {
    let with = smtp
        .messages()
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains("Content-Type: image/jpeg"))
        .count();
    let expected = if with_pictures { smtp.count() } else { 0 };
    assert_eq!(with, expected, "mails with a picture");
}

/// The daemon's last 40 log lines, for failure messages.
pub fn tail(d: &Daemon) -> String {
    let logs = d.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether `mqttwarn` runs here; the benches print "—" in its column when it does not.
pub fn mqttwarn_installed() -> bool {
    Command::new("mqttwarn")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One persistent client publishing at QoS 1, its event loop polled in a task.
pub struct Publisher {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub async fn connect(port: u16) -> Publisher {
        let mut opts = MqttOptions::new(format!("bench-{}", free_port()), ("127.0.0.1", port));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        opts.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::builder(opts).capacity(1000).build();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("bench publisher lost the broker: {e}"),
                }
            }
        });
        tokio::time::timeout(PATIENCE, ready_rx)
            .await
            .expect("publisher connects")
            .expect("publisher task alive");
        Publisher { client, task }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, payload, PublishOptions::new(QoS::AtLeastOnce))
            .await
            .expect("queue a publish");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CPU, cores, load average and the Mosquitto version: what the figures were taken on.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mosq = Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    format!(
        "machine: {cpu}, {cores} cores; load average {}; {mosq}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// mqttwarn (`pip install mqttwarn`) with its smtp service, subscribed to `bench/+` on a
/// broker of its own and mailing each message to `smtp` (which listens on port 25 of
/// `server`), with mqttwarn's defaults otherwise: one worker, one SMTP session per mail.
///
/// Port 25 and a bare host name: smtplib sends `server` (`host:port`) as the TLS server
/// name, which rustls refuses as not a DNS name.
pub struct Mqttwarn {
    pub broker: Mosquitto,
    pub smtp: SmtpServer,
    child: Child,
    dir: tempfile::TempDir,
}

impl Mqttwarn {
    pub async fn start(smtp: SmtpServer, server: &str) -> Mqttwarn {
        let broker = mosquitto::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let ini = dir.path().join("mqttwarn.ini");
        std::fs::write(
            &ini,
            format!(
                "[defaults]\nhostname = '127.0.0.1'\nport = {mqtt}\nclientid = 'mqttwarn-bench'\n\
                 loglevel = WARNING\nlaunch = smtp\n\n\
                 [config:smtp]\nserver = '{server}'\nsender = 'cam@example.com'\n\
                 username = 'cam@example.com'\npassword = 'abcdefghijklmnop'\nstarttls = True\n\
                 targets = {{'me': ['me@example.com']}}\n\n\
                 [bench/+]\ntargets = smtp:me\ntitle = {{topic}}\nformat = {{payload}}\n",
                mqtt = broker.port,
            ),
        )
        .expect("write mqttwarn.ini");
        let log = std::fs::File::create(dir.path().join("mqttwarn.log")).expect("log file");
        let mut child = Command::new("mqttwarn")
            .arg(format!("--config-file={}", ini.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("run mqttwarn");
        let began = Instant::now();
        while !broker.log().contains("Sending SUBACK to mqttwarn-bench") {
            assert!(
                began.elapsed() < PATIENCE && child.try_wait().ok().flatten().is_none(),
                "mqttwarn did not subscribe:\n{}",
                std::fs::read_to_string(dir.path().join("mqttwarn.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Mqttwarn {
            broker,
            smtp,
            child,
            dir,
        }
    }

    /// Waits (1 ms polls) until mqttwarn has mailed `n` messages.
    pub async fn wait_for(&self, n: usize) {
        let began = Instant::now();
        while self.smtp.count() < n {
            assert!(
                began.elapsed() < PATIENCE,
                "mqttwarn mailed {} of {n}:\n{}",
                self.smtp.count(),
                std::fs::read_to_string(self.dir.path().join("mqttwarn.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Mqttwarn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
