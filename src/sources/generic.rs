//! `kind: mqtt`: any topic, for scripts and NVRs without a decoder of their own (Home
//! Assistant, Blue Iris, Amcrest/Dahua bridges, `mosquitto_pub`).
//!
//! What a message may be:
//! - a raw JPEG: mailed as is;
//! - a switch word (`on_values`/`off_values`, any case; by default `on`/`off`, `1`/`0`,
//!   `true`/`false`): only the rising edge (off → on) mails, per camera;
//! - JSON: fields are picked with JSON pointers (`json.camera`, `json.label`, `json.score`,
//!   `json.id`, `json.image_url`, `json.image_base64`); a `json.state` (default `/state`)
//!   that holds a switch word makes it a switch (amcrest2mqtt's `"action": "Start"`/`"Stop"`
//!   with `on_values: [Start]`, `off_values: [Stop]`);
//! - base64 text of a JPEG (starts with `/9j/`): mailed as the picture;
//! - any other text: each message is an event.
//!
//! The camera is `json.camera`, else the fixed `camera`, else the topic level matched by the
//! first `+`. Retained messages are replays on (re)connect: they only set switch state.
//!
//! A picture URL taken from a payload is fetched only if its host and port are in
//! `allowed_hosts` (default: the host and port of every URL named in the configuration):
//! otherwise anyone who can publish to the broker could make snapmail fetch arbitrary URLs
//! inside the network. An entry without a port (`nvr.lan`) allows every port of that host;
//! the defaults always carry one, so naming Frigate does not open every service on its
//! machine. The fetch follows redirects on that same host and port only.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;
use tracing::warn;

use super::{unique_id, wildcards};
use crate::config::sources::{GenericSource, JsonFields, DEFAULT_OFF_VALUES, DEFAULT_ON_VALUES};
use crate::event::{Credentials, Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};

pub struct Generic {
    index: usize,
    filter: String,
    camera: Option<String>,
    label: Option<String>,
    retained: bool,
    json: JsonFields,
    url_template: Option<String>,
    frigate_latest: bool,
    credentials: Option<Credentials>,
    allowed_hosts: Vec<String>,
    /// Words that mean on and off, lower case.
    on_values: Vec<String>,
    off_values: Vec<String>,
    /// Last switch state per topic and camera, for rising edges.
    states: HashMap<String, bool>,
}

impl Generic {
    pub fn new(index: usize, cfg: &GenericSource, config_hosts: &[String]) -> Self {
        Generic {
            index,
            filter: cfg.topic.trim().to_owned(),
            camera: cfg.camera.clone(),
            label: cfg.label.clone(),
            retained: cfg.retained,
            json: cfg.json.clone(),
            url_template: cfg.snapshot.url.clone(),
            frigate_latest: cfg.snapshot.frigate_latest,
            credentials: cfg.snapshot.username.as_ref().map(|u| Credentials {
                username: u.clone(),
                password: cfg.snapshot.password.clone().unwrap_or_default(),
            }),
            allowed_hosts: match &cfg.allowed_hosts {
                Some(list) => list
                    .0
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
                None => config_hosts.to_vec(),
            },
            on_values: words(cfg.on_values.as_ref().map(|l| &l.0[..]), DEFAULT_ON_VALUES),
            off_values: words(
                cfg.off_values.as_ref().map(|l| &l.0[..]),
                DEFAULT_OFF_VALUES,
            ),
            states: HashMap::new(),
        }
    }

    fn camera_for(&self, topic: &str, json_camera: Option<String>) -> String {
        json_camera
            .or_else(|| self.camera.clone())
            .or_else(|| {
                wildcards(&self.filter, topic)
                    .and_then(|l| l.first().map(|s| s.to_string()))
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| topic.to_owned())
    }

    /// `Some(true)` for an on word, `Some(false)` for an off word, `None` for anything else.
    fn switch_state(&self, text: &str) -> Option<bool> {
        let t = text.trim().to_lowercase();
        if self.on_values.contains(&t) {
            Some(true)
        } else if self.off_values.contains(&t) {
            Some(false)
        } else {
            None
        }
    }

    /// Record `on` for `key`; true when it is a rising edge.
    fn edge(&mut self, key: String, on: bool) -> bool {
        let was = self.states.insert(key, on).unwrap_or(false);
        on && !was
    }

    /// The picture when the message carries none: `snapshot.url` or Frigate's latest frame.
    fn configured_snapshot(&self, camera: &str) -> SnapshotSource {
        if let Some(t) = &self.url_template {
            return SnapshotSource::Camera {
                url: t.replace("{camera}", &path_segment(camera)),
                credentials: self.credentials.clone(),
                key: format!("sources[{}].snapshot", self.index),
            };
        }
        if self.frigate_latest {
            return SnapshotSource::FrigateLatest {
                camera: camera.to_owned(),
            };
        }
        SnapshotSource::None {
            reason: format!(
                "the message has no picture and sources[{}] names none (set snapshot.url or snapshot.frigate_latest)",
                self.index
            ),
        }
    }

    /// A URL from a payload, if its host and port are allowed.
    fn payload_url(&self, camera: &str, url: &str) -> SnapshotSource {
        let key = format!("sources[{}].allowed_hosts", self.index);
        let Some((host, host_port)) = host_and_port(url) else {
            return SnapshotSource::None {
                reason: format!("the picture URL in the message is not an http(s) URL: {url:?}"),
            };
        };
        if self
            .allowed_hosts
            .iter()
            .any(|h| *h == host || *h == host_port)
        {
            return SnapshotSource::Url {
                url: url.to_owned(),
                key,
            };
        }
        let reason = format!(
            "the picture URL in the message points at {host_port}, which is not in {key}; not fetched (add it there if it is yours)"
        );
        warn!(camera, "{reason}");
        SnapshotSource::None { reason }
    }

    fn decode_json(&mut self, topic: &str, v: &Value) -> Decoded {
        let text_at =
            |p: &Option<String>| p.as_deref().and_then(|p| v.pointer(p)).and_then(as_text);
        let camera = self.camera_for(topic, text_at(&self.json.camera));
        let state_pointer = self.json.state.clone().unwrap_or_else(|| "/state".into());
        if let Some(state) = v.pointer(&state_pointer).and_then(as_text) {
            if let Some(on) = self.switch_state(&state) {
                if !self.edge(format!("{topic}\u{0}{camera}"), on) {
                    return Decoded::Ignored(format!(
                        "{camera}: state {state} is not a rising edge"
                    ));
                }
            }
        }
        let id = text_at(&self.json.id).map(|id| format!("mqtt:{camera}:{id}"));
        let mut ev = Event::new(
            self.kind(),
            id.unwrap_or_else(|| unique_id(self.kind(), &camera)),
            camera.clone(),
        );
        ev.label = text_at(&self.json.label).or_else(|| self.label.clone());
        ev.score = self
            .json
            .score
            .as_deref()
            .and_then(|p| v.pointer(p))
            .and_then(score);
        let b64 = text_at(&self.json.image_base64);
        let url = text_at(&self.json.image_url);
        ev.snapshot = match (b64, url) {
            (Some(b), _) => match decode_base64(&b) {
                Ok(bytes) => SnapshotSource::Inline(bytes.into()),
                Err(e) => SnapshotSource::None {
                    reason: format!(
                        "the base64 picture at {} does not decode: {e}",
                        self.json.image_base64.as_deref().unwrap_or("")
                    ),
                },
            },
            (None, Some(u)) => self.payload_url(&camera, &u),
            (None, None) => self.configured_snapshot(&camera),
        };
        Decoded::Event(Box::new(ev))
    }
}

impl Decoder for Generic {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.filter.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        let payload = msg.payload;
        if payload.starts_with(&[0xFF, 0xD8]) {
            if msg.retained && !self.retained {
                return Decoded::Ignored("retained picture: a replay on (re)connect".into());
            }
            let camera = self.camera_for(msg.topic, None);
            let mut ev = Event::new(self.kind(), unique_id(self.kind(), &camera), camera);
            ev.label = self.label.clone();
            ev.snapshot = SnapshotSource::Inline(payload.to_vec().into());
            return Decoded::Event(Box::new(ev));
        }
        let Ok(text) = std::str::from_utf8(payload) else {
            return Decoded::Malformed("binary payload that is not a JPEG".into());
        };
        let trimmed = text.trim();
        let json = trimmed
            .starts_with('{')
            .then(|| serde_json::from_str::<Value>(trimmed).ok())
            .flatten();
        if msg.retained && !self.retained {
            // Remember a replayed switch state, so a replayed ON is not taken as new.
            let (camera, state) = match &json {
                Some(v) => {
                    let cam = self
                        .json
                        .camera
                        .as_deref()
                        .and_then(|p| v.pointer(p))
                        .and_then(as_text);
                    let p = self.json.state.clone().unwrap_or_else(|| "/state".into());
                    (
                        self.camera_for(msg.topic, cam),
                        v.pointer(&p).and_then(as_text),
                    )
                }
                None => (self.camera_for(msg.topic, None), Some(trimmed.to_owned())),
            };
            if let Some(on) = state.as_deref().and_then(|s| self.switch_state(s)) {
                self.states
                    .insert(format!("{}\u{0}{camera}", msg.topic), on);
            }
            return Decoded::Ignored(
                "retained message: a replay on (re)connect (set retained: true to act on it)"
                    .into(),
            );
        }
        if let Some(v) = json {
            return self.decode_json(msg.topic, &v);
        }
        if trimmed.starts_with('{') {
            return Decoded::Malformed("payload looks like JSON but does not parse".into());
        }
        let camera = self.camera_for(msg.topic, None);
        // `/9j/` is base64 for FF D8 FF: a JPEG sent as text (Blue Iris `&ALERT_JPEG`).
        if trimmed.starts_with("/9j/") {
            let mut ev = Event::new(self.kind(), unique_id(self.kind(), &camera), camera);
            ev.label = self.label.clone();
            ev.snapshot = match decode_base64(trimmed) {
                Ok(bytes) => SnapshotSource::Inline(bytes.into()),
                Err(e) => SnapshotSource::None {
                    reason: format!("the base64 picture in the message does not decode: {e}"),
                },
            };
            return Decoded::Event(Box::new(ev));
        }
        if let Some(on) = self.switch_state(trimmed) {
            if !self.edge(format!("{}\u{0}{camera}", msg.topic), on) {
                return Decoded::Ignored(format!("{camera}: {trimmed} is not a rising edge"));
            }
        }
        let mut ev = Event::new(self.kind(), unique_id(self.kind(), &camera), camera.clone());
        ev.label = self.label.clone();
        ev.snapshot = self.configured_snapshot(&camera);
        Decoded::Event(Box::new(ev))
    }
}

/// `(host, host:port)` of an http(s) URL, lower case, with the scheme's port when none is
/// written; `None` for anything else.
pub(super) fn host_and_port(url: &str) -> Option<(String, String)> {
    let u = reqwest::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str()?.to_ascii_lowercase();
    let port = u.port_or_known_default()?;
    Some((host.clone(), format!("{host}:{port}")))
}

/// The configured words, or the defaults, trimmed and lower case.
fn words(configured: Option<&[String]>, default: &[&str]) -> Vec<String> {
    match configured {
        Some(list) => list.iter().map(|w| w.trim().to_lowercase()).collect(),
        None => default.iter().map(|w| w.to_string()).collect(),
    }
}

/// A JSON string or number as text.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `0.87`, `87`, `"87%"`, `"person:87%"` → 0.87.
fn score(v: &Value) -> Option<f32> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let digits: String = s
                .rsplit(':')
                .next()?
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let n: f64 = digits.parse().ok()?;
            if s.contains('%') {
                n / 100.0
            } else {
                n
            }
        }
        _ => return None,
    };
    let n = if n > 1.0 { n / 100.0 } else { n };
    (0.0..=1.0).contains(&n).then_some(n as f32)
}

/// Standard base64, padded or not, with line breaks or a `data:` prefix.
fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{
        general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig,
    };
    let body = s.split_once(";base64,").map_or(s, |(_, b)| b);
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    engine
        .decode(&clean)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(clean.trim_end_matches('=')))
}

/// `camera` made safe as one URL path segment.
fn path_segment(camera: &str) -> String {
    camera
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sources::GenericSnapshot;
    use crate::config::StringList;

    fn generic(topic: &str) -> Generic {
        Generic::new(
            2,
            &GenericSource {
                topic: topic.into(),
                ..Default::default()
            },
            &["nvr.lan".into()],
        )
    }

    /// `sources[index]` on topic `t` for camera `gate`, its picture at the JSON `url`.
    fn url_source(index: usize, allowed_hosts: &[&str]) -> Generic {
        Generic::new(
            index,
            &GenericSource {
                topic: "t".into(),
                camera: Some("gate".into()),
                json: JsonFields {
                    image_url: Some("/url".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            &allowed_hosts
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>(),
        )
    }

    fn msg<'a>(topic: &'a str, payload: &'a [u8]) -> Message<'a> {
        Message {
            topic,
            payload,
            retained: false,
        }
    }

    #[test]
    fn switch_words_mail_on_the_rising_edge_only() {
        let mut d = generic("cameras/+/motion");
        let t = "cameras/driveway/motion";
        let Decoded::Event(e) = d.decode(msg(t, b"ON")) else {
            panic!()
        };
        assert_eq!(e.camera, "driveway");
        assert!(matches!(d.decode(msg(t, b"on")), Decoded::Ignored(_)));
        assert!(matches!(d.decode(msg(t, b"OFF")), Decoded::Ignored(_)));
        assert!(matches!(d.decode(msg(t, b"true")), Decoded::Event(_)));
        assert!(matches!(d.decode(msg(t, b"0")), Decoded::Ignored(_)));
        assert!(matches!(d.decode(msg(t, b"1")), Decoded::Event(_)));
        // Another camera has its own state.
        assert!(matches!(
            d.decode(msg("cameras/gate/motion", b"ON")),
            Decoded::Event(_)
        ));
    }

    #[test]
    fn default_switch_words_in_any_case_and_spacing() {
        let d = generic("t");
        for on in ["ON", "on", "1", "true", " On\n", "TRUE"] {
            assert_eq!(d.switch_state(on), Some(true), "{on}");
        }
        for off in ["OFF", "off", "0", "false"] {
            assert_eq!(d.switch_state(off), Some(false), "{off}");
        }
        assert_eq!(d.switch_state("Motion alarm"), None);
        assert_eq!(d.switch_state("Start"), None);
    }

    #[test]
    fn configured_switch_words_replace_the_defaults() {
        // amcrest2mqtt's event topic: {"Code": "VideoMotion", "action": "Start"|"Stop"}.
        let mut d = Generic::new(
            0,
            &GenericSource {
                topic: "amcrest2mqtt/+/event".into(),
                json: JsonFields {
                    state: Some("/action".into()),
                    label: Some("/Code".into()),
                    ..Default::default()
                },
                on_values: Some(StringList(vec!["Start".into()])),
                off_values: Some(StringList(vec![" STOP ".into()])),
                ..Default::default()
            },
            &[],
        );
        let t = "amcrest2mqtt/AMC0458F1C2A9B7E31/event";
        let start = br#"{"Code": "VideoMotion", "action": "Start", "index": "0"}"#;
        let stop = br#"{"Code": "VideoMotion", "action": "Stop", "index": "0"}"#;
        let Decoded::Event(e) = d.decode(msg(t, start)) else {
            panic!()
        };
        assert_eq!(e.camera, "AMC0458F1C2A9B7E31");
        assert_eq!(e.label.as_deref(), Some("VideoMotion"));
        assert!(
            matches!(d.decode(msg(t, start)), Decoded::Ignored(_)),
            "still on"
        );
        assert!(matches!(d.decode(msg(t, stop)), Decoded::Ignored(w) if w.contains("Stop")));
        assert!(matches!(d.decode(msg(t, start)), Decoded::Event(_)));
        assert_eq!(d.switch_state("start"), Some(true));
        assert_eq!(d.switch_state("stop"), Some(false));
        // The defaults no longer apply: ON is just text.
        assert_eq!(d.switch_state("ON"), None);
    }

    #[test]
    fn a_retained_on_is_a_replay_not_an_edge() {
        let mut d = generic("cameras/+/motion");
        let t = "cameras/driveway/motion";
        let replay = Message {
            retained: true,
            ..msg(t, b"ON")
        };
        assert!(matches!(d.decode(replay), Decoded::Ignored(w) if w.contains("retained")));
        assert!(
            matches!(d.decode(msg(t, b"ON")), Decoded::Ignored(_)),
            "still on"
        );
        assert!(matches!(d.decode(msg(t, b"OFF")), Decoded::Ignored(_)));
        assert!(matches!(d.decode(msg(t, b"ON")), Decoded::Event(_)));
    }

    #[test]
    fn json_fields_and_base64_picture() {
        let mut d = Generic::new(
            0,
            &GenericSource {
                topic: "scripts/alert".into(),
                json: JsonFields {
                    camera: Some("/cam".into()),
                    label: Some("/what".into()),
                    score: Some("/confidence".into()),
                    image_base64: Some("/jpeg".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            &[],
        );
        let p = br#"{"cam": "porch", "what": "person", "confidence": 87, "jpeg": "/9j/4AA="}"#;
        let Decoded::Event(e) = d.decode(msg("scripts/alert", p)) else {
            panic!()
        };
        assert_eq!(e.camera, "porch");
        assert_eq!(e.summary(), "person (87%)");
        assert_eq!(
            e.snapshot,
            SnapshotSource::Inline(vec![0xFF, 0xD8, 0xFF, 0xE0, 0].into())
        );
    }

    #[test]
    fn payload_urls_are_fetched_only_from_allowed_hosts() {
        let mut d = url_source(0, &["nvr.lan"]);
        let ok = br#"{"url": "http://NVR.lan:81/image/gate"}"#;
        let Decoded::Event(e) = d.decode(msg("t", ok)) else {
            panic!()
        };
        assert_eq!(
            e.snapshot,
            SnapshotSource::Url {
                url: "http://NVR.lan:81/image/gate".into(),
                key: "sources[0].allowed_hosts".into()
            }
        );
        let evil = br#"{"url": "http://169.254.169.254/latest/meta-data"}"#;
        let Decoded::Event(e) = d.decode(msg("t", evil)) else {
            panic!()
        };
        assert!(matches!(&e.snapshot, SnapshotSource::None { reason }
            if reason.contains("169.254.169.254") && reason.contains("sources[0].allowed_hosts")));
    }

    #[test]
    fn default_hosts_allow_their_own_port_only() {
        // The defaults are `host:port` (config_hosts): Frigate's API, not its whole machine.
        let mut d = url_source(1, &["frigate.lan:5000", "nvr.lan:80"]);
        let mut snapshot = |url: &str| {
            let p = format!(r#"{{"url": "{url}"}}"#);
            match d.decode(msg("t", p.as_bytes())) {
                Decoded::Event(e) => e.snapshot,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(
            snapshot("http://frigate.lan:5000/api/gate/latest.jpg"),
            SnapshotSource::Url { .. }
        ));
        assert!(matches!(
            snapshot("http://nvr.lan/image/gate"),
            SnapshotSource::Url { .. }
        ));
        for other_port in [
            "http://frigate.lan:22/",
            "http://frigate.lan/",
            "https://frigate.lan:8971/api/x",
            "https://nvr.lan/image/gate",
        ] {
            let got = snapshot(other_port);
            assert!(
                matches!(&got, SnapshotSource::None { reason }
                    if reason.contains("not in sources[1].allowed_hosts")),
                "{other_port}: {got:?}"
            );
        }
    }

    #[test]
    fn url_template_and_frigate_latest() {
        let mut d = Generic::new(
            1,
            &GenericSource {
                topic: "BlueIris/+/Status".into(),
                snapshot: GenericSnapshot {
                    url: Some("http://bi:81/image/{camera}?q=80".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            &[],
        );
        let p = br#"{ "type": "MOTION_A", "trigger": "ON" }"#;
        let Decoded::Event(e) = d.decode(msg("BlueIris/front yard/Status", p)) else {
            panic!()
        };
        assert!(
            matches!(&e.snapshot, SnapshotSource::Camera { url, .. } if url == "http://bi:81/image/front%20yard?q=80")
        );
        let mut f = Generic::new(
            0,
            &GenericSource {
                topic: "frigate/+/motion".into(),
                snapshot: GenericSnapshot {
                    frigate_latest: true,
                    ..Default::default()
                },
                ..Default::default()
            },
            &[],
        );
        let Decoded::Event(e) = f.decode(msg("frigate/driveway/motion", b"ON")) else {
            panic!()
        };
        assert_eq!(
            e.snapshot,
            SnapshotSource::FrigateLatest {
                camera: "driveway".into()
            }
        );
    }

    #[test]
    fn scores() {
        assert_eq!(score(&serde_json::json!(0.5)), Some(0.5));
        assert_eq!(score(&serde_json::json!(87)), Some(0.87));
        assert_eq!(score(&serde_json::json!("person:87%")), Some(0.87));
        assert_eq!(score(&serde_json::json!("n/a")), None);
    }
}
