//! Frigate's `<prefix>/events` topic: one JSON message per tracked-object change.
//!
//! Frigate sends `new` when an object stops being a false positive, then `update`s and an
//! `end`. We turn the first message whose `after` is real (not `false_positive`) and has a
//! snapshot into an [`Event`] keyed by the Frigate event id; the policy stage's dedup makes
//! sure later messages for the same id mail nothing. Unknown fields are ignored, so the
//! 0.13 → 0.17 shapes all decode.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{Decoded, Decoder, Message};
use crate::event::{Event, SnapshotSource};

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
            Err(e) => return Decoded::Ignored(format!("not a Frigate event message: {e}")),
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
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t))
            .unwrap_or_else(SystemTime::now);
        Decoded::Event(Box::new(Event {
            source: self.kind(),
            link: Some(format!("{}/explore?event_id={}", self.base_url, obj.id)),
            snapshot: SnapshotSource::FrigateEvent {
                event_id: obj.id.clone(),
            },
            id: obj.id,
            camera: obj.camera,
            label: obj.label,
            sub_label: obj
                .sub_label
                .map(SubLabel::into_name)
                .filter(|s| !s.is_empty()),
            score,
            zones,
            time,
        }))
    }
}
