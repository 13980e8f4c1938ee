//! Frigate's `<prefix>/events` topic: one JSON message per tracked-object change.
//!
//! Frigate sends `new` when an object stops being a false positive, then `update`s and an
//! `end`. We turn the first message whose `after` is real (not `false_positive`) and has a
//! snapshot into an [`Event`] keyed by the Frigate event id; the policy stage's dedup makes
//! sure later messages for the same id mail nothing. Unknown fields are ignored, so the
//! 0.13 → 0.17 shapes all decode.

use std::time::SystemTime;

use serde::Deserialize;

use crate::event::{Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};

/// Decoder for `<prefix>/events`.
pub struct FrigateEvents {
    topic: String,
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
    sub_label: Option<SubLabel>,
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

/// `sub_label` is `[name, score]` since 0.13 and a bare string before.
#[derive(Deserialize)]
#[serde(untagged)]
enum SubLabel {
    Pair(String, #[allow(dead_code)] Option<f32>),
    Name(String),
}

impl SubLabel {
    fn into_name(self) -> String {
        match self {
            SubLabel::Pair(n, _) | SubLabel::Name(n) => n,
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
        ev.sub_label = obj
            .sub_label
            .map(SubLabel::into_name)
            .filter(|s| !s.is_empty());
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
