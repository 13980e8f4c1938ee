//! Home Assistant MQTT discovery: one retained device message that gives Home Assistant a
//! notifications switch per camera (wired to the arm/disarm topics), a "send test email"
//! button and mail counters, plus availability through the MQTT Last Will.
//!
//! The device message is published again on every (re)connection and whenever Home
//! Assistant announces `online` on its status topic (it forgets entities on restart).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::event::Event;
use crate::metrics::OutboxStats;
use crate::mqtt::{Decoded, Decoder, Message, Outgoing};

/// Topics and names the discovery message refers to.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Home Assistant's discovery prefix (`homeassistant`).
    pub prefix: String,
    /// snapmail's own topic prefix (`control.topic_prefix`, `snapmail`).
    pub base: String,
    pub cameras: Vec<String>,
}

impl Discovery {
    /// `homeassistant.discovery` on: the device for snapmail and its listed cameras.
    pub fn from_config(config: &crate::config::Config) -> Option<Discovery> {
        config.homeassistant.discovery.then(|| Discovery {
            prefix: config.homeassistant.prefix.clone(),
            base: config.control.topic_prefix.clone(),
            cameras: config.cameras.keys().cloned().collect(),
        })
    }

    pub fn availability_topic(&self) -> String {
        format!("{}/availability", self.base)
    }

    pub fn stats_topic(&self) -> String {
        format!("{}/stats", self.base)
    }

    pub fn test_email_topic(&self) -> String {
        format!("{}/test_email", self.base)
    }

    /// The Last Will: Home Assistant shows the entities unavailable when snapmail is gone.
    pub fn last_will(&self) -> Outgoing {
        Outgoing {
            topic: self.availability_topic(),
            payload: b"offline".to_vec(),
            retain: true,
        }
    }

    /// The retained device-based discovery message.
    pub fn config_message(&self) -> Outgoing {
        let version = env!("CARGO_PKG_VERSION");
        let mut cmps = Map::new();
        for cam in &self.cameras {
            let id = format!("snapmail_{}_notifications", slug(cam));
            cmps.insert(
                id.clone(),
                json!({
                    "p": "switch",
                    "name": format!("{cam} notifications"),
                    "unique_id": id,
                    "default_entity_id": format!("switch.{id}"),
                    "command_topic": format!("{}/{cam}/set", self.base),
                    "state_topic": format!("{}/{cam}/state", self.base),
                    "value_template": "{{ 'ON' if value_json.armed else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:email-alert",
                }),
            );
        }
        cmps.insert(
            "snapmail_send_test_email".into(),
            json!({
                "p": "button",
                "name": "Send test email",
                "unique_id": "snapmail_send_test_email",
                "default_entity_id": "button.snapmail_send_test_email",
                "command_topic": self.test_email_topic(),
                "payload_press": "PRESS",
                "icon": "mdi:email-fast",
            }),
        );
        for (key, name, extra) in [
            (
                "sent_today",
                "Mails sent today",
                json!({"state_class": "total_increasing", "icon": "mdi:email-check"}),
            ),
            (
                "suppressed_today",
                "Events suppressed today",
                json!({"state_class": "total_increasing", "icon": "mdi:email-off"}),
            ),
            (
                "failed",
                "Mails failed",
                json!({"state_class": "total_increasing", "icon": "mdi:email-remove"}),
            ),
            (
                "outbox_depth",
                "Outbox depth",
                json!({"state_class": "measurement", "icon": "mdi:tray-full"}),
            ),
            (
                "last_mail",
                "Last mail",
                json!({"device_class": "timestamp"}),
            ),
        ] {
            let id = format!("snapmail_{key}");
            let mut c = json!({
                "p": "sensor",
                "name": name,
                "unique_id": id,
                "default_entity_id": format!("sensor.{id}"),
                "state_topic": self.stats_topic(),
                "value_template": format!("{{{{ value_json.{key} }}}}"),
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            cmps.insert(id, c);
        }
        let payload = json!({
            "device": {"identifiers": ["snapmail"], "name": "snapmail", "manufacturer": "snapmail", "sw_version": version},
            "origin": {"name": "snapmail", "sw_version": version},
            "availability_topic": self.availability_topic(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "components": Value::Object(cmps),
        });
        Outgoing {
            topic: format!("{}/device/snapmail/config", self.prefix),
            payload: payload.to_string().into_bytes(),
            retain: true,
        }
    }
}

/// `Front Door` → `front_door`, for ids.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Listens to Home Assistant's status topic and to the test-email button.
pub struct DiscoveryDecoder {
    status_topic: String,
    test_topic: String,
    republish: mpsc::Sender<()>,
}

impl DiscoveryDecoder {
    pub fn new(d: &Discovery, republish: mpsc::Sender<()>) -> Self {
        DiscoveryDecoder {
            status_topic: format!("{}/status", d.prefix),
            test_topic: d.test_email_topic(),
            republish,
        }
    }
}

impl Decoder for DiscoveryDecoder {
    fn kind(&self) -> &'static str {
        "homeassistant"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.status_topic.clone(), self.test_topic.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        if msg.topic == self.status_topic {
            if msg.payload.eq_ignore_ascii_case(b"online") {
                let _ = self.republish.try_send(());
                return Decoded::Ignored(
                    "Home Assistant is online: discovery is published again".into(),
                );
            }
            return Decoded::Ignored("Home Assistant status".into());
        }
        if msg.retained {
            return Decoded::Ignored("a retained button press is a replay".into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut ev = Event::new("homeassistant", format!("test-email-{now}"), "snapmail");
        ev.label = Some("test email".into());
        ev.snapshot = crate::event::SnapshotSource::None {
            reason: "this is a test mail from the Home Assistant button".into(),
        };
        Decoded::Event(Box::new(ev))
    }
}

/// Publish the discovery message, availability and the counters: on every connection,
/// when Home Assistant comes online, and the counters every `every`.
pub async fn run(
    d: Discovery,
    stats: Arc<OutboxStats>,
    publish: mpsc::Sender<Outgoing>,
    mut connections: watch::Receiver<u64>,
    mut republish: mpsc::Receiver<()>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    let mut day = today();
    let mut base = (OutboxStats::get(&stats.sent), suppressed());
    loop {
        let announce = tokio::select! {
            c = connections.changed() => { if c.is_err() { break } true }
            r = republish.recv() => { if r.is_none() { break } true }
            _ = tick.tick() => false,
        };
        if announce {
            info!(
                "homeassistant: publishing discovery for {} camera(s)",
                d.cameras.len()
            );
            for m in [
                d.config_message(),
                Outgoing {
                    topic: d.availability_topic(),
                    payload: b"online".to_vec(),
                    retain: true,
                },
            ] {
                if publish.send(m).await.is_err() {
                    return;
                }
            }
        }
        if today() != day {
            day = today();
            base = (OutboxStats::get(&stats.sent), suppressed());
        }
        let last = OutboxStats::get(&stats.last_sent);
        let payload = json!({
            "sent_today": OutboxStats::get(&stats.sent).saturating_sub(base.0),
            "suppressed_today": suppressed().saturating_sub(base.1),
            "failed": OutboxStats::get(&stats.dead),
            "outbox_depth": OutboxStats::get(&stats.depth),
            "last_mail": (last > 0).then(|| jiff::Timestamp::from_second(last as i64).map(|t| t.to_string()).ok()).flatten(),
        });
        debug!("homeassistant: stats {payload}");
        let m = Outgoing {
            topic: d.stats_topic(),
            payload: payload.to_string().into_bytes(),
            retain: true,
        };
        if publish.send(m).await.is_err() {
            return;
        }
    }
}

fn suppressed() -> u64 {
    crate::metrics::metrics().decisions_total("suppressed")
}

fn today() -> jiff::civil::Date {
    jiff::Zoned::now().date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_message_has_the_required_keys() {
        let d = Discovery {
            prefix: "homeassistant".into(),
            base: "snapmail".into(),
            cameras: vec!["driveway".into(), "Front Door".into()],
        };
        let m = d.config_message();
        assert_eq!(m.topic, "homeassistant/device/snapmail/config");
        assert!(m.retain);
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["device"]["identifiers"][0], "snapmail");
        assert_eq!(v["origin"]["name"], "snapmail");
        let sw = &v["components"]["snapmail_front_door_notifications"];
        assert_eq!(sw["p"], "switch");
        assert_eq!(sw["command_topic"], "snapmail/Front Door/set");
        assert_eq!(
            sw["default_entity_id"],
            "switch.snapmail_front_door_notifications"
        );
        assert!(sw.get("object_id").is_none(), "object_id is deprecated");
        for c in v["components"].as_object().unwrap().values() {
            assert!(
                c["unique_id"].is_string()
                    && c["p"].is_string()
                    && c["default_entity_id"].is_string()
            );
        }
        assert_eq!(
            v["components"]["snapmail_last_mail"]["device_class"],
            "timestamp"
        );
    }
}
