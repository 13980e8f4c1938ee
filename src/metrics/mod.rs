//! Process-wide metrics in Prometheus form, and the health facts `/healthz` reports.
//!
//! One global [`Metrics`] (stages record into it with one-line calls, so instrumenting a stage
//! changes no signatures). Outbox counters live in [`OutboxStats`], which the outbox counts
//! into and a collector reads at scrape time, so there is a single source of truth for them.
//!
//! This module is a leaf: every stage may record here, and it knows none of them.

mod outbox;

pub use outbox::OutboxStats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric snapmail exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    events: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    smtp_replies: Family<Labels, Counter>,
    fetch_seconds: Histogram,
    resize_seconds: Histogram,
    mqtt_connected: AtomicBool,
    /// Why sending is stopped until the configuration changes (a refused login, an
    /// untrusted certificate), for `/healthz`.
    sending_blocked: Mutex<Option<&'static str>>,
}

/// The global metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let events = Family::<Labels, Counter>::default();
        let decisions = Family::<Labels, Counter>::default();
        let smtp_replies = Family::<Labels, Counter>::default();
        // 1 ms … ~16 s
        let fetch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let resize_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "snapmail_events_received",
            "Events decoded from MQTT, by source and camera",
            events.clone(),
        );
        registry.register(
            "snapmail_decisions",
            "Policy decisions: mailed, suppressed (with reason), filtered (with rule), duplicate",
            decisions.clone(),
        );
        registry.register(
            "snapmail_smtp_replies",
            "SMTP results by reply code (\"none\" for network, TLS and timeout failures)",
            smtp_replies.clone(),
        );
        registry.register(
            "snapmail_snapshot_fetch_seconds",
            "Time to download a snapshot",
            fetch_seconds.clone(),
        );
        registry.register(
            "snapmail_snapshot_resize_seconds",
            "Time to decode, resize and encode a snapshot",
            resize_seconds.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            events,
            decisions,
            smtp_replies,
            fetch_seconds,
            resize_seconds,
            mqtt_connected: AtomicBool::new(false),
            sending_blocked: Mutex::new(None),
        }
    }

    pub fn event_received(&self, source: &str, camera: &str) {
        self.events
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("camera", camera.to_owned()),
            ])
            .inc();
    }

    /// `decision`: `mailed`, `suppressed`, `filtered`, `duplicate`; `reason`: why (or "").
    pub fn decision(&self, decision: &str, reason: &str) {
        self.decisions
            .get_or_create(&vec![
                ("decision", decision.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Sum of one decision over every reason.
    pub fn decisions_total(&self, decision: &str) -> u64 {
        // Family has no iteration API; the reasons are a small known set.
        ["cooldown", "rate limit (burst/interval)", "daily_limit", ""]
            .iter()
            .map(|r| {
                self.decisions
                    .get_or_create(&vec![
                        ("decision", decision.to_owned()),
                        ("reason", (*r).to_owned()),
                    ])
                    .get()
            })
            .sum()
    }

    pub fn smtp_reply(&self, code: Option<u16>) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        self.smtp_replies.get_or_create(&vec![("code", code)]).inc();
    }

    pub fn fetch_took(&self, d: Duration) {
        self.fetch_seconds.observe(d.as_secs_f64());
    }

    pub fn resize_took(&self, d: Duration) {
        self.resize_seconds.observe(d.as_secs_f64());
    }

    pub fn set_mqtt_connected(&self, up: bool) {
        self.mqtt_connected.store(up, Ordering::Relaxed);
    }

    /// Sending is stopped for `reason` (said by `/healthz`), or goes again (`None`).
    pub fn set_sending_blocked(&self, reason: Option<&'static str>) {
        *self
            .sending_blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Export the outbox counters of `stats` (once per process).
    pub fn watch_outbox(&self, stats: Arc<OutboxStats>) {
        self.registry
            .lock()
            .expect("metrics registry lock")
            .register_collector(Box::new(OutboxCollector(stats)));
    }

    /// What is wrong, if anything: `Ok` when healthy, else the reasons.
    pub fn health(&self) -> Result<(), Vec<&'static str>> {
        let mut problems = Vec::new();
        if !self.mqtt_connected.load(Ordering::Relaxed) {
            problems.push("the MQTT session is down (see the log for the broker's answer)");
        }
        if let Some(reason) = *self
            .sending_blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            problems.push(reason);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String");
        out
    }
}

#[derive(Debug)]
struct OutboxCollector(Arc<OutboxStats>);

impl Collector for OutboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let counters = [
            (
                "snapmail_outbox_queued",
                "Mails accepted into the outbox",
                &s.queued,
            ),
            (
                "snapmail_outbox_sent",
                "Mails the SMTP server accepted",
                &s.sent,
            ),
            (
                "snapmail_outbox_retried",
                "Failed sends that will be retried",
                &s.retried,
            ),
            ("snapmail_outbox_dead", "Mails moved to dead/", &s.dead),
            (
                "snapmail_outbox_refused",
                "Mails refused because the outbox was full or not writable",
                &s.refused,
            ),
            (
                "snapmail_outbox_paused_quota",
                "Pauses for Gmail's daily quota (550 5.4.5)",
                &s.paused_quota,
            ),
            (
                "snapmail_outbox_paused_credentials",
                "Pauses for a refused login (534/535)",
                &s.paused_credentials,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(OutboxStats::get(value));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let depth = ConstGauge::new(OutboxStats::get(&s.depth) as i64);
        depth.encode(encoder.encode_descriptor(
            "snapmail_outbox_depth",
            "Mails waiting in the outbox",
            None,
            depth.metric_type(),
        )?)?;
        let oldest = OutboxStats::get(&s.oldest_created);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let age = ConstGauge::new(if oldest == 0 {
            0
        } else {
            now.saturating_sub(oldest) as i64
        });
        age.encode(encoder.encode_descriptor(
            "snapmail_outbox_oldest_age_seconds",
            "Age of the oldest waiting mail",
            None,
            age.metric_type(),
        )?)?;
        Ok(())
    }
}
