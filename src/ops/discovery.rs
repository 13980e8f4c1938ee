//! Home Assistant MQTT discovery: one retained device message that gives Home Assistant,
//! per camera, a notifications switch (wired to the arm/disarm topics), a snooze number
//! (minutes, wired to the snooze topic) and a "snoozed until" timestamp sensor; plus a
//! "send test email" button and mail counters, and availability through the MQTT Last Will.
//!
//! Everything is named after the instance id (`instance_id`, else `mqtt.client_id`), so
//! two snapmails on one broker are two devices: the discovery topic, the device
//! identifier, every `unique_id` and `default_entity_id` start with it, and snapmail's own
//! topics (control, availability, stats, test button) live under `control.topic_prefix`,
//! which defaults to the instance id. The default instance `snapmail` keeps the names
//! earlier versions used.
//!
//! The device message is published again on every (re)connection and whenever Home
//! Assistant announces `online` on its status topic (it forgets entities on restart).
//! Components announced by the previous run and no longer configured are published once
//! more as `{"p": <platform>}`, which is how device-based discovery removes a component
//! (kept in the retained message for this run, so a Home Assistant that reconnects still
//! sees it). The counters and the announced components are kept in [`discovery_state`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::discovery_state::{self, Announced, DiscoveryState, Reading};
use crate::event::Event;
use crate::metrics::OutboxStats;
use crate::mqtt::{Decoded, Decoder, Message, Outgoing};

/// The longest snooze the Home Assistant number offers, in minutes (a day; longer pauses
/// are what the switch is for).
const SNOOZE_MAX_MINUTES: u32 = 24 * 60;

/// Topics and names the discovery message refers to.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Home Assistant's discovery prefix (`homeassistant`).
    pub prefix: String,
    /// snapmail's own topic prefix (`control.topic_prefix`, default the instance id).
    pub base: String,
    /// This snapmail's name on the broker (`instance_id`, default `mqtt.client_id`).
    pub instance: String,
    pub cameras: Vec<String>,
    /// Control topics on: the per-camera switch and snooze entities have someone to talk to.
    pub control: bool,
    /// Where the counters and the announced components are kept.
    pub state_file: PathBuf,
    /// Whose midnight starts a new day for the daily counters (`timezone`, else the system's).
    pub time_zone: TimeZone,
}

impl Discovery {
    /// `homeassistant.discovery` on: the device for this instance and its listed cameras.
    pub fn from_config(config: &crate::config::Config) -> Option<Discovery> {
        config.homeassistant.discovery.then(|| Discovery {
            prefix: config.homeassistant.prefix.clone(),
            base: config.control_topic_prefix().to_owned(),
            instance: config.instance_id().to_owned(),
            cameras: config.cameras.keys().cloned().collect(),
            control: config.control.enabled,
            state_file: discovery_state::path_beside(&config.state_file()),
            // A bad name is reported by the policy's settings, which refuse it.
            time_zone: config
                .timezone
                .as_deref()
                .and_then(|n| TimeZone::get(n).ok())
                .unwrap_or_else(TimeZone::system),
        })
    }

    /// The instance id as Home Assistant ids allow it (`[a-z0-9_]`).
    fn node(&self) -> String {
        slug(&self.instance)
    }

    pub fn config_topic(&self) -> String {
        format!("{}/device/{}/config", self.prefix, self.node())
    }

    pub fn availability_topic(&self) -> String {
        availability_topic(&self.base)
    }

    pub fn stats_topic(&self) -> String {
        stats_topic(&self.base)
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

    /// Every component of the device, by key.
    pub fn components(&self) -> Map<String, Value> {
        let node = self.node();
        let mut cmps = Map::new();
        let mut add = |key: String, platform: &str, mut c: Value| {
            if let Some(o) = c.as_object_mut() {
                o.insert("p".into(), platform.into());
                o.insert("unique_id".into(), key.clone().into());
                o.insert(
                    "default_entity_id".into(),
                    format!("{platform}.{key}").into(),
                );
            }
            cmps.insert(key, c);
        };
        if self.control {
            for cam in &self.cameras {
                let id = format!("{node}_{}", slug(cam));
                let state_topic = format!("{}/{cam}/state", self.base);
                add(
                    format!("{id}_notifications"),
                    "switch",
                    json!({
                        "name": format!("{cam} notifications"),
                        "command_topic": format!("{}/{cam}/set", self.base),
                        "state_topic": state_topic,
                        "value_template": "{{ 'ON' if value_json.armed else 'OFF' }}",
                        "payload_on": "ON",
                        "payload_off": "OFF",
                        "icon": "mdi:email-alert",
                    }),
                );
                add(
                    format!("{id}_snooze"),
                    "number",
                    json!({
                        "name": format!("{cam} snooze"),
                        "command_topic": format!("{}/{cam}/snooze", self.base),
                        // The snooze topic takes whole minutes; 0 cancels.
                        "command_template": "{{ value | int }}",
                        "state_topic": state_topic,
                        "value_template": "{{ value_json.snooze_minutes | default(0) }}",
                        "min": 0,
                        "max": SNOOZE_MAX_MINUTES,
                        "step": 1,
                        "mode": "box",
                        "unit_of_measurement": "min",
                        "icon": "mdi:bell-sleep",
                    }),
                );
                add(
                    format!("{id}_snoozed_until"),
                    "sensor",
                    json!({
                        "name": format!("{cam} snoozed until"),
                        "state_topic": state_topic,
                        // `None` (not snoozed) is an unknown state to Home Assistant.
                        "value_template": "{{ value_json.snoozed_until }}",
                        "device_class": "timestamp",
                        "icon": "mdi:bell-sleep-outline",
                    }),
                );
            }
        }
        add(
            format!("{node}_send_test_email"),
            "button",
            json!({
                "name": "Send test email",
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
            let mut c = json!({
                "name": name,
                "state_topic": self.stats_topic(),
                "value_template": format!("{{{{ value_json.{key} }}}}"),
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            add(format!("{node}_{key}"), "sensor", c);
        }
        cmps
    }

    /// The retained device-based discovery message. `removed` (key → platform) are
    /// components to take out of Home Assistant: they go in as the platform alone.
    pub fn config_message(&self, removed: &BTreeMap<String, String>) -> Outgoing {
        let version = env!("CARGO_PKG_VERSION");
        let mut cmps = self.components();
        for (key, platform) in removed {
            if !cmps.contains_key(key) {
                cmps.insert(key.clone(), json!({ "p": platform }));
            }
        }
        let node = self.node();
        // The instance id as the device name: Home Assistant versions that predate
        // `default_entity_id` derive entity ids from device and entity names, and then
        // arrive at the same ids (`snapmail_garage` + `a notifications`).
        let name = &self.instance;
        let payload = json!({
            "device": {"identifiers": [node], "name": name, "manufacturer": "snapmail", "sw_version": version},
            "origin": {"name": "snapmail", "sw_version": version},
            "availability_topic": self.availability_topic(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "components": Value::Object(cmps),
        });
        Outgoing {
            topic: self.config_topic(),
            payload: payload.to_string().into_bytes(),
            retain: true,
        }
    }

    /// What this run announces, for the state file.
    fn announced(&self) -> Announced {
        Announced {
            topic: self.config_topic(),
            base: self.base.clone(),
            components: self
                .components()
                .into_iter()
                .map(|(k, v)| (k, v["p"].as_str().unwrap_or_default().to_owned()))
                .collect(),
        }
    }
}

fn availability_topic(base: &str) -> String {
    format!("{base}/availability")
}

fn stats_topic(base: &str) -> String {
    format!("{base}/stats")
}

/// What the previous run announced that this one does not: its components to remove, and
/// the previous device if the instance id or topic prefix changed since.
#[derive(Debug, Default, PartialEq)]
struct Leftovers {
    removed: BTreeMap<String, String>,
    old_device: Option<Announced>,
}

fn leftovers(previous: Option<&Announced>, now: &Announced) -> Leftovers {
    let Some(prev) = previous else {
        return Leftovers::default();
    };
    if prev.topic != now.topic {
        // Another device: clearing its retained message removes it with all its entities.
        return Leftovers {
            removed: BTreeMap::new(),
            old_device: Some(prev.clone()),
        };
    }
    let removed = prev
        .components
        .iter()
        .filter(|(k, _)| !now.components.contains_key(*k))
        .map(|(k, p)| (k.clone(), p.clone()))
        .collect();
    let old_device = (prev.base != now.base).then(|| prev.clone());
    Leftovers {
        removed,
        old_device,
    }
}

/// Retained messages that clear what `old` left behind: its device message if it moved,
/// and its availability and stats if the topic prefix moved.
fn clear_old(old: &Announced, now: &Announced) -> Vec<Outgoing> {
    let clear = |topic: String| Outgoing {
        topic,
        payload: Vec::new(),
        retain: true,
    };
    let mut out = Vec::new();
    if old.topic != now.topic {
        out.push(clear(old.topic.clone()));
    }
    if old.base != now.base {
        out.push(clear(availability_topic(&old.base)));
        out.push(clear(stats_topic(&old.base)));
    }
    out
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
    let mut saved = match discovery_state::load(&d.state_file).await {
        Ok(s) => s,
        Err(e) => {
            warn!("{e}");
            DiscoveryState::default()
        }
    };
    let now = d.announced();
    let left = leftovers(saved.announced.as_ref(), &now);
    if !left.removed.is_empty() {
        info!(
            "homeassistant: removing {} entit(ies) no longer configured: {}",
            left.removed.len(),
            left.removed.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(old) = &left.old_device {
        info!(
            "homeassistant: the device moved from {} to {}; clearing the old one",
            old.topic, now.topic
        );
    }
    let mut state = saved.clone();
    let mut cleared = false;
    let mut tick = tokio::time::interval(every);
    let mut seen = Reading::default();
    'run: loop {
        let announce = tokio::select! {
            c = connections.changed() => { if c.is_err() { break } true }
            r = republish.recv() => { if r.is_none() { break } true }
            _ = tick.tick() => false,
        };
        if announce {
            info!(
                "homeassistant: publishing discovery for {} camera(s) on {}",
                d.cameras.len(),
                now.topic
            );
            let mut messages = Vec::new();
            if let (Some(old), false) = (&left.old_device, cleared) {
                messages.extend(clear_old(old, &now));
                cleared = true;
            }
            messages.push(d.config_message(&left.removed));
            messages.push(Outgoing {
                topic: d.availability_topic(),
                payload: b"online".to_vec(),
                retain: true,
            });
            for m in messages {
                if publish.send(m).await.is_err() {
                    break 'run;
                }
            }
            // Remembered only once published: a run that never reached the broker leaves
            // the removals to the next one.
            state.announced = Some(now.clone());
        }
        let reading = read(&stats);
        state.counters.advance(today(&d.time_zone), seen, reading);
        seen = reading;
        let c = &state.counters;
        let payload = json!({
            "sent_today": c.sent_today,
            "suppressed_today": c.suppressed_today,
            "failed": c.failed,
            "outbox_depth": OutboxStats::get(&stats.depth),
            "last_mail": (c.last_mail > 0).then(|| jiff::Timestamp::from_second(c.last_mail as i64).map(|t| t.to_string()).ok()).flatten(),
        });
        debug!("homeassistant: stats {payload}");
        let m = Outgoing {
            topic: d.stats_topic(),
            payload: payload.to_string().into_bytes(),
            retain: true,
        };
        if publish.send(m).await.is_err() {
            break 'run;
        }
        // At most one write per announcement or stats interval, and only on a change.
        save_if_changed(&d, &state, &mut saved).await;
    }
    // Counts since the last tick (mails that went out during shutdown included, as far
    // as they finished before the broker connection closed).
    state
        .counters
        .advance(today(&d.time_zone), seen, read(&stats));
    save_if_changed(&d, &state, &mut saved).await;
}

async fn save_if_changed(d: &Discovery, state: &DiscoveryState, saved: &mut DiscoveryState) {
    if state == saved {
        return;
    }
    match discovery_state::save(&d.state_file, state).await {
        Ok(()) => *saved = state.clone(),
        Err(e) => warn!("{e}"),
    }
}

fn read(stats: &OutboxStats) -> Reading {
    Reading {
        sent: OutboxStats::get(&stats.sent),
        suppressed: crate::metrics::metrics().decisions_total("suppressed"),
        dead: OutboxStats::get(&stats.dead),
        last_sent: OutboxStats::get(&stats.last_sent),
    }
}

fn today(tz: &TimeZone) -> jiff::civil::Date {
    jiff::Timestamp::now().to_zoned(tz.clone()).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn discovery(instance: &str, base: &str, cameras: &[&str]) -> Discovery {
        Discovery {
            prefix: "homeassistant".into(),
            base: base.into(),
            instance: instance.into(),
            cameras: cameras.iter().map(|c| c.to_string()).collect(),
            control: true,
            state_file: PathBuf::from("state.homeassistant.json"),
            time_zone: TimeZone::UTC,
        }
    }

    fn payload(m: &Outgoing) -> Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    fn config(config: &str) -> crate::config::Config {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, config.as_bytes()).unwrap();
        crate::config::load_from(Some(f.path()), Some(Default::default())).unwrap()
    }

    #[test]
    fn discovery_message_has_the_required_keys() {
        let d = discovery("snapmail", "snapmail", &["driveway", "Front Door"]);
        let m = d.config_message(&BTreeMap::new());
        assert_eq!(m.topic, "homeassistant/device/snapmail/config");
        assert!(m.retain);
        let v = payload(&m);
        assert_eq!(v["device"]["identifiers"][0], "snapmail");
        assert_eq!(v["device"]["name"], "snapmail");
        assert_eq!(v["origin"]["name"], "snapmail");
        let sw = &v["components"]["snapmail_front_door_notifications"];
        assert_eq!(sw["p"], "switch");
        assert_eq!(sw["command_topic"], "snapmail/Front Door/set");
        assert_eq!(
            sw["default_entity_id"],
            "switch.snapmail_front_door_notifications"
        );
        assert!(sw.get("object_id").is_none(), "object_id is deprecated");
        assert_eq!(
            v["components"]["snapmail_last_mail"]["device_class"],
            "timestamp"
        );
        let snooze = &v["components"]["snapmail_driveway_snooze"];
        assert_eq!(snooze["p"], "number");
        assert_eq!(snooze["command_topic"], "snapmail/driveway/snooze");
        let until = &v["components"]["snapmail_driveway_snoozed_until"];
        assert_eq!(until["device_class"], "timestamp");
        assert_eq!(until["state_topic"], "snapmail/driveway/state");
    }

    /// The platforms' required options and the discovery rules, from Home Assistant's MQTT
    /// documentation (device-based discovery; switch, button, number, sensor).
    fn assert_valid_for_home_assistant(m: &Outgoing, prefix: &str) {
        let id_chars = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let object_id = m
            .topic
            .strip_prefix(&format!("{prefix}/device/"))
            .and_then(|r| r.strip_suffix("/config"))
            .expect("homeassistant/device/<object_id>/config");
        assert!(id_chars(object_id), "{object_id}");
        let v = payload(m);
        assert!(v["device"]["identifiers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()));
        assert!(v["origin"]["name"].is_string(), "origin.name is required");
        for (key, c) in v["components"].as_object().unwrap() {
            assert!(id_chars(key), "component key {key}");
            let p = c["p"].as_str().expect("p");
            if c.as_object().unwrap().len() == 1 {
                continue; // a removal: the platform alone
            }
            let uid = c["unique_id"].as_str().expect("unique_id");
            let entity = c["default_entity_id"].as_str().unwrap();
            let (domain, object) = entity.split_once('.').unwrap();
            assert_eq!(domain, p);
            assert!(
                object
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{entity}"
            );
            assert!(!uid.is_empty());
            let has = |k: &str| c[k].is_string();
            let required: &[&str] = match p {
                "switch" | "button" => &["command_topic"],
                "number" => &["command_topic"],
                "sensor" => &["state_topic"],
                other => panic!("unexpected platform {other}"),
            };
            for r in required {
                assert!(has(r), "{key}: {p} needs {r}");
            }
            for topic in ["command_topic", "state_topic"] {
                if let Some(t) = c[topic].as_str() {
                    assert!(!t.contains(['+', '#']), "{key}: {topic} {t}");
                }
            }
            if p == "number" {
                assert!(c["min"].as_f64().unwrap() < c["max"].as_f64().unwrap());
                assert!(c["step"].as_f64().unwrap() > 0.0);
            }
            if c["device_class"] == "timestamp" {
                assert!(c.get("unit_of_measurement").is_none());
            }
        }
    }

    #[test]
    fn two_instances_share_nothing() {
        let a = config("cameras:\n  driveway: {}\n  door: {}\nhomeassistant:\n  discovery: true\n");
        let b = config("mqtt:\n  client_id: snapmail-garage\ncameras:\n  driveway: {}\nhomeassistant:\n  discovery: true\n");
        let (a, b) = (
            Discovery::from_config(&a).unwrap(),
            Discovery::from_config(&b).unwrap(),
        );
        // The default install keeps the names of earlier versions.
        assert_eq!(a.config_topic(), "homeassistant/device/snapmail/config");
        assert_eq!(a.availability_topic(), "snapmail/availability");
        assert_eq!(
            b.config_topic(),
            "homeassistant/device/snapmail_garage/config"
        );
        assert_eq!(b.base, "snapmail-garage");
        let (ma, mb) = (
            a.config_message(&BTreeMap::new()),
            b.config_message(&BTreeMap::new()),
        );
        assert_valid_for_home_assistant(&ma, "homeassistant");
        assert_valid_for_home_assistant(&mb, "homeassistant");
        let (va, vb) = (payload(&ma), payload(&mb));
        assert_ne!(va["device"]["identifiers"], vb["device"]["identifiers"]);
        assert_ne!(va["availability_topic"], vb["availability_topic"]);
        let ids = |v: &Value, field: &str| -> BTreeSet<String> {
            v["components"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|c| c[field].as_str().map(str::to_owned))
                .collect()
        };
        for field in [
            "unique_id",
            "default_entity_id",
            "command_topic",
            "state_topic",
        ] {
            let (ia, ib) = (ids(&va, field), ids(&vb, field));
            assert!(!ia.is_empty());
            assert!(
                ia.is_disjoint(&ib),
                "{field}: {:?}",
                ia.intersection(&ib).collect::<Vec<_>>()
            );
        }
        assert_ne!(a.stats_topic(), b.stats_topic());
        assert_ne!(a.test_email_topic(), b.test_email_topic());
    }

    #[test]
    fn an_explicit_topic_prefix_and_instance_id_win() {
        let c = config("instance_id: attic\ncontrol:\n  topic_prefix: cams/attic\nhomeassistant:\n  discovery: true\n");
        let d = Discovery::from_config(&c).unwrap();
        assert_eq!(d.config_topic(), "homeassistant/device/attic/config");
        assert_eq!(d.availability_topic(), "cams/attic/availability");
        let v = payload(&d.config_message(&BTreeMap::new()));
        assert_eq!(v["device"]["name"], "attic");
        assert_eq!(
            v["components"]["attic_send_test_email"]["command_topic"],
            "cams/attic/test_email"
        );
    }

    #[test]
    fn components_no_longer_configured_are_removed() {
        let before = discovery("snapmail", "snapmail", &["a", "b"]).announced();
        let after_d = discovery("snapmail", "snapmail", &["a"]);
        let after = after_d.announced();
        let left = leftovers(Some(&before), &after);
        assert_eq!(left.old_device, None);
        let removed: Vec<&str> = left.removed.keys().map(String::as_str).collect();
        assert_eq!(
            removed,
            [
                "snapmail_b_notifications",
                "snapmail_b_snooze",
                "snapmail_b_snoozed_until"
            ]
        );
        let m = after_d.config_message(&left.removed);
        assert_valid_for_home_assistant(&m, "homeassistant");
        let v = payload(&m);
        assert_eq!(
            v["components"]["snapmail_b_notifications"],
            json!({"p": "switch"})
        );
        assert_eq!(v["components"]["snapmail_b_snooze"], json!({"p": "number"}));
        assert_eq!(v["components"]["snapmail_a_notifications"]["p"], "switch");
        // Nothing to remove on a first start, nor when nothing changed.
        assert_eq!(leftovers(None, &after), Leftovers::default());
        assert_eq!(leftovers(Some(&after), &after), Leftovers::default());

        // Control off: the camera entities go, the rest stays.
        let mut off = discovery("snapmail", "snapmail", &["a"]);
        off.control = false;
        let left = leftovers(Some(&after), &off.announced());
        assert_eq!(left.removed.len(), 3);
    }

    #[test]
    fn a_renamed_instance_clears_its_old_device() {
        let old = discovery("snapmail", "snapmail", &["a"]).announced();
        let new = discovery("garage", "garage", &["a"]).announced();
        let left = leftovers(Some(&old), &new);
        assert!(left.removed.is_empty());
        let cleared = clear_old(left.old_device.as_ref().unwrap(), &new);
        let topics: Vec<&str> = cleared.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/device/snapmail/config",
                "snapmail/availability",
                "snapmail/stats"
            ]
        );
        assert!(cleared.iter().all(|m| m.retain && m.payload.is_empty()));
    }
}
