//! Frigate's `<prefix>/events` topic: one JSON message per tracked-object change.
//!
//! Frigate sends `new` when an object stops being a false positive, then `update`s and an
//! `end`. We turn the first message whose `after` is real (not `false_positive`) and has a
//! snapshot into an [`Event`] keyed by the Frigate event id; the policy stage's dedup makes
//! sure later messages for the same id mail nothing. Unknown fields are ignored, so the
//! 0.13 → 0.17 shapes all decode.
//!
//! Licence plates (0.16+): an unknown plate arrives as `recognized_license_plate` (the code
//! sends `[plate, score]`, the docs show a bare string; both decode), a known one as the
//! `sub_label` naming its owner. A name or plate of an unexpected shape is left out rather
//! than losing the event.

use std::time::SystemTime;

use serde::Deserialize;

use crate::event::{Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};

/// Decoder for `<prefix>/events`.
pub struct FrigateEvents {
    topic: String,
    /// Where "Open in Frigate" links point (`frigate.public_url`, else `frigate.url`).
    base_url: String,
}

impl FrigateEvents {
    pub fn new(topic_prefix: &str, base_url: &str) -> Self {
        FrigateEvents {
            topic: format!("{}/events", topic_prefix.trim_end_matches('/')),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    after: TrackedObject,
}

#[derive(Deserialize)]
struct TrackedObject {
    id: String,
    camera: String,
    label: Option<String>,
    #[serde(default)]
    sub_label: Option<Named>,
    #[serde(default)]
    recognized_license_plate: Option<Named>,
    #[serde(default)]
    top_score: Option<f32>,
    #[serde(default)]
    score: Option<f32>,
    #[serde(default)]
    false_positive: bool,
    #[serde(default)]
    has_snapshot: bool,
    #[serde(default)]
    entered_zones: Vec<String>,
    #[serde(default)]
    current_zones: Vec<String>,
    #[serde(default)]
    start_time: Option<f64>,
    #[serde(default)]
    stationary: bool,
    #[serde(default)]
    max_severity: Option<String>,
}

/// `sub_label` is `[name, score]` since 0.13 and a bare string before;
/// `recognized_license_plate` is `[plate, score]` or a bare string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Named {
    Pair(String, #[allow(dead_code)] Option<f32>),
    Name(String),
    Other(#[allow(dead_code)] serde::de::IgnoredAny),
}

impl Named {
    fn into_name(self) -> Option<String> {
        match self {
            Named::Pair(n, _) | Named::Name(n) => Some(n).filter(|n| !n.trim().is_empty()),
            Named::Other(_) => None,
        }
    }
}

impl Decoder for FrigateEvents {
    fn kind(&self) -> &'static str {
        "frigate_events"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        let env: Envelope = match serde_json::from_slice(msg.payload) {
            Ok(e) => e,
            Err(e) => return Decoded::Malformed(format!("not a Frigate event message: {e}")),
        };
        let obj = env.after;
        if !matches!(env.kind.as_str(), "new" | "update" | "end") {
            return Decoded::Ignored(format!("event type {:?} is not new/update/end", env.kind));
        }
        if obj.false_positive {
            return Decoded::Ignored(format!("event {} is still a false positive", obj.id));
        }
        if !obj.has_snapshot {
            return Decoded::Ignored(format!("event {} has no snapshot yet", obj.id));
        }
        let zones = if obj.entered_zones.is_empty() {
            obj.current_zones
        } else {
            obj.entered_zones
        };
        // top_score is Frigate's best guess over the object's life; 0.0 means "not computed yet".
        let score = obj.top_score.filter(|s| *s > 0.0).or(obj.score);
        let time = obj
            .start_time
            .and_then(super::unix_time)
            .unwrap_or_else(SystemTime::now);
        let mut ev = Event::new(self.kind(), obj.id.clone(), obj.camera);
        ev.link = Some(format!("{}/explore?event_id={}", self.base_url, obj.id));
        ev.snapshot = SnapshotSource::FrigateEvent { event_id: obj.id };
        ev.label = obj.label;
        ev.sub_label = obj.sub_label.and_then(Named::into_name);
        ev.plate = obj.recognized_license_plate.and_then(Named::into_name);
        ev.score = score;
        ev.zones = zones;
        ev.time = time;
        ev.stationary = obj.stationary;
        ev.severity = obj.max_severity;
        Decoded::Event(Box::new(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(payload: &str) -> Decoded {
        let mut d = FrigateEvents::new("frigate", "http://frigate:5000/");
        d.decode(Message {
            topic: "frigate/events",
            payload: payload.as_bytes(),
            retained: false,
        })
    }

    fn event(payload: &str) -> Event {
        match decode(payload) {
            Decoded::Event(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn new_event_0_14() {
        let e = event(include_str!(
            "../../tests/fixtures/frigate-events-new-0.14.json"
        ));
        assert_eq!(e.id, "1731254400.123456-k3v9qz");
        assert_eq!(e.camera, "driveway");
        assert_eq!(e.label.as_deref(), Some("person"));
        assert_eq!(e.score, Some(0.730_468_75));
        assert_eq!(e.zones, vec!["driveway_entrance"]);
        assert_eq!(e.summary(), "person (73%)");
        assert_eq!(
            e.snapshot,
            SnapshotSource::FrigateEvent {
                event_id: "1731254400.123456-k3v9qz".into()
            }
        );
        assert_eq!(
            e.link.as_deref(),
            Some("http://frigate:5000/explore?event_id=1731254400.123456-k3v9qz")
        );
        assert_eq!(
            e.time
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_731_254_400
        );
    }

    #[test]
    fn update_with_face_sub_label() {
        let e = event(include_str!(
            "../../tests/fixtures/frigate-events-update-0.14-subLabel-face.json"
        ));
        assert_eq!(e.sub_label.as_deref(), Some("Alice"));
        assert_eq!(e.zones, vec!["driveway_entrance", "porch"]);
        assert_eq!(
            e.id, "1731254400.123456-k3v9qz",
            "same id as the new message, so dedup drops it"
        );
    }

    #[test]
    fn end_event_0_15_decodes_with_new_fields() {
        let e = event(include_str!(
            "../../tests/fixtures/frigate-events-end-0.15.json"
        ));
        assert_eq!(e.camera, "garden");
        assert_eq!(e.zones, vec!["lawn"]);
    }

    #[test]
    fn false_positives_and_missing_snapshots_are_ignored() {
        let fp = r#"{"type":"new","before":{},"after":{"id":"1.0-a","camera":"c","label":"person","false_positive":true,"has_snapshot":true}}"#;
        assert!(matches!(decode(fp), Decoded::Ignored(why) if why.contains("false positive")));
        let nosnap = r#"{"type":"new","before":{},"after":{"id":"1.0-a","camera":"c","label":"person","false_positive":false,"has_snapshot":false}}"#;
        assert!(matches!(decode(nosnap), Decoded::Ignored(why) if why.contains("no snapshot")));
    }

    #[test]
    fn licence_plates_0_16_in_every_shape() {
        let e = event(include_str!(
            "../../tests/fixtures/frigate-events-update-0.16-lpr.json"
        ));
        assert_eq!(e.camera, "street");
        assert_eq!(e.label.as_deref(), Some("car"));
        assert_eq!(e.plate.as_deref(), Some("KX21ZPT"));
        assert_eq!(e.sub_label, None);
        assert_eq!(e.summary(), "car KX21ZPT (87%)");
        let with = |plate: &str, sub: &str| {
            let p = r#"{"type":"update","after":{"id":"1.0-a","camera":"c","label":"car","false_positive":false,"has_snapshot":true,"recognized_license_plate":PLATE,"sub_label":SUB}}"#;
            event(&p.replace("PLATE", plate).replace("SUB", sub))
        };
        // The docs' bare string, with its separate score.
        let bare = with(r#""AB12CDE","recognized_license_plate_score":0.9"#, "null");
        assert_eq!(bare.plate.as_deref(), Some("AB12CDE"));
        // A known plate: the owner's name in sub_label, the plate beside it.
        let known = with(r#"["AB12CDE",0.95]"#, r#"["Bob's van",0.95]"#);
        assert_eq!(known.sub_label.as_deref(), Some("Bob's van"));
        assert_eq!(known.plate.as_deref(), Some("AB12CDE"));
        // Shapes nobody documented lose the plate, not the event.
        assert_eq!(with("42", "null").plate, None);
        assert_eq!(with(r#"{"plate":"X"}"#, "7").sub_label, None);
        assert_eq!(with(r#""""#, "null").plate, None);
    }

    #[test]
    fn old_string_sub_labels_and_garbage() {
        let old = r#"{"type":"update","after":{"id":"1.0-a","camera":"c","label":"person","sub_label":"Bob","false_positive":false,"has_snapshot":true}}"#;
        assert_eq!(event(old).sub_label.as_deref(), Some("Bob"));
        assert!(matches!(decode("not json"), Decoded::Malformed(_)));
        assert!(matches!(
            decode(r#"{"type":"new","after":{"camera":5}}"#),
            Decoded::Malformed(_)
        ));
        assert!(matches!(decode("\u{0}\u{ff}"), Decoded::Malformed(_)));
    }
}
