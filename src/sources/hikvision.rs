//! Hikvision cameras through an MQTT bridge; the picture comes from the camera itself.
//!
//! Understood payloads on the source's `topic`:
//! - toxuin/alarmserver: topic `camera-alerts/<camera>/<eventType>`, payload the event
//!   description (`Motion alarm`); it publishes only the first `active` of an event.
//! - hikmqtt: one fixed topic, JSON `{"devId", "EventType", "Channel", …}`; the camera is the
//!   entry of `cameras` whose `dev_id` matches, else the source's `camera`.
//! - a raw ISAPI `EventNotificationAlert` XML (bridges that forward the alert stream as is):
//!   `inactive` and `videoloss` heartbeats are ignored, and `active` repeats (about once a
//!   second while an event lasts) mail once.
//!
//! The snapshot is `GET <url>/ISAPI/Streaming/channels/<channel>/picture` with the camera's
//! Digest credentials from `cameras.<name>`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{unique_id, wildcards};
use crate::config::sources::{HikvisionCamera, HikvisionSource};
use crate::event::{Credentials, Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};
use crate::xml::xml_text;

/// An `active` repeat within this long of the previous one is the same event.
const REPEAT_WINDOW: Duration = Duration::from_secs(5);

pub struct HikvisionBridge {
    index: usize,
    topic: String,
    camera: Option<String>,
    ignore: Vec<String>,
    cameras: Vec<(String, HikvisionCamera)>,
    last_active: HashMap<(String, String), Instant>,
}

impl HikvisionBridge {
    pub fn new(index: usize, cfg: &HikvisionSource) -> Self {
        HikvisionBridge {
            index,
            topic: cfg.topic.trim().to_owned(),
            camera: cfg.camera.clone(),
            ignore: cfg
                .ignore_events
                .0
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
            cameras: cfg
                .cameras
                .iter()
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect(),
            last_active: HashMap::new(),
        }
    }

    fn snapshot(&self, camera: &str, channel_hint: Option<u32>) -> SnapshotSource {
        let key = format!("sources[{}].cameras.{camera}", self.index);
        let Some((_, cam)) = self.cameras.iter().find(|(n, _)| n == camera) else {
            return SnapshotSource::None {
                reason: format!(
                    "camera {camera} has no entry under sources[{}].cameras; add its url, username and password there to get its picture",
                    self.index
                ),
            };
        };
        // A configured channel wins; else an NVR alert's channel N is its main stream N01.
        let channel = cam
            .channel
            .or_else(|| channel_hint.map(|c| c * 100 + 1))
            .unwrap_or(101);
        SnapshotSource::Camera {
            url: format!(
                "{}/ISAPI/Streaming/channels/{channel}/picture",
                cam.url.trim_end_matches('/')
            ),
            credentials: cam.username.as_ref().map(|u| Credentials {
                username: u.clone(),
                password: cam.password.clone().unwrap_or_default(),
            }),
            key,
        }
    }

    fn event(&self, camera: &str, event_type: &str, channel: Option<u32>) -> Event {
        let mut ev = Event::new(self.kind(), unique_id(self.kind(), camera), camera);
        ev.label = Some(label_for(event_type));
        ev.snapshot = self.snapshot(camera, channel);
        ev
    }

    fn ignored(&self, event_type: &str) -> bool {
        self.ignore.contains(&event_type.to_ascii_lowercase())
    }

    fn decode_hikmqtt(&self, v: &serde_json::Value) -> Decoded {
        let dev = v.get("devId").and_then(serde_json::Value::as_i64);
        let channel = v
            .get("Channel")
            .and_then(serde_json::Value::as_u64)
            .and_then(|c| u32::try_from(c).ok());
        let by_dev = dev.and_then(|d| {
            self.cameras
                .iter()
                .find(|(_, c)| c.dev_id == Some(d))
                .map(|(n, _)| n.clone())
        });
        let only = (self.cameras.len() == 1).then(|| self.cameras[0].0.clone());
        let camera = by_dev
            .or_else(|| self.camera.clone())
            .or(only)
            .unwrap_or_else(|| format!("hikvision-{}", dev.unwrap_or(0)));
        let mut ev = self.event(&camera, "VCA", channel);
        ev.label = Some("VCA rule alarm".into());
        Decoded::Event(Box::new(ev))
    }

    fn decode_xml(&mut self, topic_camera: Option<&str>, xml: &str) -> Decoded {
        let event_type = xml_text(xml, "eventType").unwrap_or_default();
        let state = xml_text(xml, "eventState").unwrap_or_default();
        let ip = xml_text(xml, "ipAddress");
        let camera = topic_camera
            .map(str::to_owned)
            .or_else(|| {
                let ip = ip.as_deref()?;
                self.cameras
                    .iter()
                    .find(|(_, c)| {
                        reqwest::Url::parse(&c.url)
                            .ok()
                            .and_then(|u| u.host_str().map(|h| h == ip))
                            .unwrap_or(false)
                    })
                    .map(|(n, _)| n.clone())
            })
            .or_else(|| self.camera.clone())
            .or_else(|| xml_text(xml, "channelName"))
            .or(ip)
            .unwrap_or_else(|| "hikvision".into());
        let key = (camera.clone(), event_type.clone());
        if !state.eq_ignore_ascii_case("active") {
            self.last_active.remove(&key);
            return Decoded::Ignored(format!("{event_type} on {camera} is {state}"));
        }
        if self.ignored(&event_type) {
            return Decoded::Ignored(format!(
                "event type {event_type} is in sources[{}].ignore_events",
                self.index
            ));
        }
        let now = Instant::now();
        let repeat = self
            .last_active
            .insert(key, now)
            .is_some_and(|t| now.duration_since(t) < REPEAT_WINDOW);
        if repeat {
            return Decoded::Ignored(format!("{event_type} on {camera} is still active"));
        }
        let channel = xml_text(xml, "channelID")
            .or_else(|| xml_text(xml, "dynChannelID"))
            .and_then(|c| c.parse().ok());
        let mut ev = self.event(&camera, &event_type, channel);
        if let Some(target) = xml_text(xml, "detectionTarget") {
            let what = if target == "human" { "person" } else { &target };
            ev.label = Some(format!("{} ({what})", label_for(&event_type)));
        }
        Decoded::Event(Box::new(ev))
    }
}

/// Hikvision's and Dahua's event type names in words.
fn label_for(event_type: &str) -> String {
    match event_type.to_ascii_lowercase().as_str() {
        "vmd" | "videomotion" => "motion".into(),
        "linedetection" | "crosslinedetection" => "line crossing".into(),
        "fielddetection" | "crossregiondetection" => "intrusion".into(),
        "regionentrance" => "region entrance".into(),
        "regionexiting" => "region exiting".into(),
        "tamperdetection" => "tampering".into(),
        "" => "alarm".into(),
        _ => event_type.to_owned(),
    }
}

impl Decoder for HikvisionBridge {
    fn kind(&self) -> &'static str {
        "hikvision_bridge"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        if msg.retained {
            return Decoded::Ignored("retained message: a replay on (re)connect".into());
        }
        let levels = wildcards(&self.topic, msg.topic).unwrap_or_default();
        let text = String::from_utf8_lossy(msg.payload);
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed) else {
                return Decoded::Malformed("payload is not valid JSON".into());
            };
            if v.get("status").is_some() && v.get("devId").is_none() {
                return Decoded::Ignored(format!("bridge status message {trimmed}"));
            }
            return self.decode_hikmqtt(&v);
        }
        if trimmed.contains("EventNotificationAlert") {
            return self.decode_xml(levels.first().copied(), trimmed);
        }
        // alarmserver: camera and event type come from the topic.
        let (camera, event_type) = match levels.as_slice() {
            [camera, event, ..] => (camera.to_string(), event.to_string()),
            [camera] => (camera.to_string(), trimmed.to_owned()),
            [] => match &self.camera {
                Some(c) => (c.clone(), trimmed.to_owned()),
                None => {
                    return Decoded::Ignored(format!(
                    "no camera in topic {}; use a + in sources[{}].topic or set sources[{}].camera",
                    msg.topic, self.index, self.index
                ))
                }
            },
        };
        if self.ignored(&event_type) {
            return Decoded::Ignored(format!(
                "event type {event_type} is in sources[{}].ignore_events",
                self.index
            ));
        }
        Decoded::Event(Box::new(self.event(&camera, &event_type, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn source() -> HikvisionSource {
        let mut s = HikvisionSource::default();
        s.cameras.insert(
            "driveway".into(),
            HikvisionCamera {
                url: "http://192.168.1.64".into(),
                username: Some("admin".into()),
                password: Some(Secret::new("pw")),
                dev_id: Some(1),
                ..Default::default()
            },
        );
        s
    }

    fn decode(d: &mut HikvisionBridge, topic: &str, payload: &[u8]) -> Decoded {
        d.decode(Message {
            topic,
            payload,
            retained: false,
        })
    }

    #[test]
    fn alarmserver_topic_names_camera_and_event() {
        let mut d = HikvisionBridge::new(0, &source());
        let Decoded::Event(e) = decode(&mut d, "camera-alerts/driveway/VMD", b"Motion alarm")
        else {
            panic!()
        };
        assert_eq!(e.camera, "driveway");
        assert_eq!(e.label.as_deref(), Some("motion"));
        match &e.snapshot {
            SnapshotSource::Camera {
                url,
                credentials,
                key,
            } => {
                assert_eq!(
                    url,
                    "http://192.168.1.64/ISAPI/Streaming/channels/101/picture"
                );
                assert_eq!(credentials.as_ref().unwrap().username, "admin");
                assert_eq!(key, "sources[0].cameras.driveway");
            }
            other => panic!("{other:?}"),
        }
        // An unknown camera still mails, without a picture and with the fix.
        let Decoded::Event(e) = decode(&mut d, "camera-alerts/gate/linedetection", b"x") else {
            panic!()
        };
        assert_eq!(e.label.as_deref(), Some("line crossing"));
        assert!(
            matches!(&e.snapshot, SnapshotSource::None { reason } if reason.contains("sources[0].cameras"))
        );
    }

    #[test]
    fn hikmqtt_json_picks_the_camera_by_dev_id() {
        let mut d = HikvisionBridge::new(
            0,
            &HikvisionSource {
                topic: "BTRGB/hikalarm".into(),
                ..source()
            },
        );
        let payload = include_bytes!("../../tests/fixtures/hikmqtt-payload.json");
        let Decoded::Event(e) = decode(&mut d, "BTRGB/hikalarm", payload) else {
            panic!()
        };
        assert_eq!(e.camera, "driveway");
        assert!(matches!(e.snapshot, SnapshotSource::Camera { .. }));
    }

    #[test]
    fn xml_alerts_active_once_inactive_and_heartbeats_ignored() {
        let mut d = HikvisionBridge::new(
            0,
            &HikvisionSource {
                topic: "hik/alerts".into(),
                ..source()
            },
        );
        let vmd = include_str!("../../tests/fixtures/hikvision-alertstream-vmd.xml");
        let Decoded::Event(e) = decode(&mut d, "hik/alerts", vmd.as_bytes()) else {
            panic!()
        };
        assert_eq!(e.camera, "driveway", "matched by ipAddress");
        assert!(
            matches!(decode(&mut d, "hik/alerts", vmd.as_bytes()), Decoded::Ignored(w) if w.contains("still active"))
        );
        let hb = include_str!("../../tests/fixtures/hikvision-alertstream-videoloss-heartbeat.xml");
        assert!(
            matches!(decode(&mut d, "hik/alerts", hb.as_bytes()), Decoded::Ignored(w) if w.contains("inactive"))
        );
        let field = include_str!("../../tests/fixtures/hikvision-alertstream-fielddetection.xml");
        let Decoded::Event(e) = decode(&mut d, "hik/alerts", field.as_bytes()) else {
            panic!()
        };
        assert_eq!(e.label.as_deref(), Some("intrusion (vehicle)"));
        assert_eq!(e.camera, "Yard", "channelName when no camera matches");
    }
}
