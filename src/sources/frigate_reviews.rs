//! Frigate 0.14+ `<prefix>/reviews`: one stream per review item (an *alert* or a
//! *detection*), each `new` → `update`s → `end`.
//!
//! A review becomes one event keyed by the review id, with its detection event ids as
//! `related_ids` so the policy also recognises it when the events topic reports the same
//! objects. Only the configured severities mail (alerts by default): a detection that is
//! later upgraded to an alert is first ignored, then mails once, as an alert. The picture is
//! the snapshot of the review's first detection event.

use std::collections::{HashSet, VecDeque};
use std::time::SystemTime;

use serde::Deserialize;

use crate::event::{Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};

/// How many emitted review ids are remembered to skip their later updates.
const REMEMBER: usize = 4096;

/// Decoder for `<prefix>/reviews`.
pub struct FrigateReviews {
    topic: String,
    /// Where "Open in Frigate" links point (`frigate.public_url`, else `frigate.url`).
    base_url: String,
    severities: Vec<String>,
    emitted: HashSet<String>,
    order: VecDeque<String>,
}

impl FrigateReviews {
    pub fn new(topic_prefix: &str, base_url: &str, severities: &[String]) -> Self {
        FrigateReviews {
            topic: format!("{}/reviews", topic_prefix.trim_end_matches('/')),
            base_url: base_url.trim_end_matches('/').to_owned(),
            severities: severities.iter().map(|s| s.to_ascii_lowercase()).collect(),
            emitted: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn remember(&mut self, id: &str) {
        if self.order.len() >= REMEMBER {
            if let Some(old) = self.order.pop_front() {
                self.emitted.remove(&old);
            }
        }
        self.emitted.insert(id.to_owned());
        self.order.push_back(id.to_owned());
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    after: Review,
}

#[derive(Deserialize)]
struct Review {
    id: String,
    camera: String,
    #[serde(default)]
    start_time: Option<f64>,
    severity: String,
    #[serde(default)]
    data: ReviewData,
}

#[derive(Deserialize, Default)]
struct ReviewData {
    #[serde(default)]
    detections: Vec<String>,
    #[serde(default)]
    objects: Vec<String>,
    #[serde(default)]
    sub_labels: Vec<String>,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    audio: Vec<String>,
}

impl Decoder for FrigateReviews {
    fn kind(&self) -> &'static str {
        "frigate_reviews"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        let env: Envelope = match serde_json::from_slice(msg.payload) {
            Ok(e) => e,
            Err(e) => return Decoded::Malformed(format!("not a Frigate review message: {e}")),
        };
        if !matches!(env.kind.as_str(), "new" | "update" | "end") {
            // 0.17's `genai` adds a description to a review already mailed.
            return Decoded::Ignored(format!("review message type {:?}", env.kind));
        }
        let r = env.after;
        if self.emitted.contains(&r.id) {
            return Decoded::Ignored(format!("review {} was already reported", r.id));
        }
        let severity = r.severity.to_ascii_lowercase();
        if !self.severities.contains(&severity) {
            return Decoded::Ignored(format!(
                "review {} is a {severity}; only {} mail (source option severity)",
                r.id,
                self.severities.join("/")
            ));
        }
        self.remember(&r.id);

        let mut objects: Vec<String> = Vec::new();
        for o in r.data.objects.iter().chain(&r.data.audio) {
            // `person-verified` means a sub label (a known face) was recognised.
            let name = o.strip_suffix("-verified").unwrap_or(o).to_owned();
            if !objects.contains(&name) {
                objects.push(name);
            }
        }
        let mut ev = Event::new(self.kind(), r.id.clone(), r.camera);
        ev.label = (!objects.is_empty()).then(|| objects.join(", "));
        ev.sub_label = (!r.data.sub_labels.is_empty()).then(|| r.data.sub_labels.join(", "));
        ev.zones = r.data.zones;
        ev.severity = Some(severity);
        ev.time = r
            .start_time
            .and_then(super::unix_time)
            .unwrap_or_else(SystemTime::now);
        ev.link = Some(format!("{}/review?id={}", self.base_url, r.id));
        ev.snapshot = match r.data.detections.first() {
            Some(id) => SnapshotSource::FrigateEvent {
                event_id: id.clone(),
            },
            None => SnapshotSource::None {
                reason: "the review has no detection event to take a snapshot from (audio only?)"
                    .into(),
            },
        };
        ev.related_ids = r.data.detections;
        Decoded::Event(Box::new(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = include_str!("../../tests/fixtures/frigate-reviews-new.json");
    const UPGRADE: &str =
        include_str!("../../tests/fixtures/frigate-reviews-update-detection-to-alert.json");

    fn decode(d: &mut FrigateReviews, payload: &str) -> Decoded {
        d.decode(Message {
            topic: "frigate/reviews",
            payload: payload.as_bytes(),
            retained: false,
        })
    }

    fn alerts() -> FrigateReviews {
        FrigateReviews::new("frigate", "http://frigate:5000", &["alert".into()])
    }

    #[test]
    fn new_alert_mails_with_its_first_detection_snapshot() {
        let mut d = alerts();
        let Decoded::Event(e) = decode(&mut d, NEW) else {
            panic!("expected an event")
        };
        assert_eq!(e.id, "1731254400.923611-r7tq2c");
        assert_eq!(e.camera, "driveway");
        assert_eq!(e.label.as_deref(), Some("person"));
        assert_eq!(e.zones, vec!["driveway_entrance"]);
        assert_eq!(e.severity.as_deref(), Some("alert"));
        assert_eq!(e.related_ids, vec!["1731254400.123456-k3v9qz"]);
        assert_eq!(
            e.snapshot,
            SnapshotSource::FrigateEvent {
                event_id: "1731254400.123456-k3v9qz".into()
            }
        );
        assert_eq!(
            e.link.as_deref(),
            Some("http://frigate:5000/review?id=1731254400.923611-r7tq2c")
        );
        // The same review's update and end say nothing new.
        let end = NEW.replacen("\"new\"", "\"end\"", 1);
        assert!(matches!(decode(&mut d, &end), Decoded::Ignored(w) if w.contains("already")));
    }

    #[test]
    fn detection_upgraded_to_alert_mails_once_as_an_alert() {
        let mut d = alerts();
        // The review's `new` was a detection: not mailed by default.
        let as_new_detection = UPGRADE
            .replacen("\"update\"", "\"new\"", 1)
            .replace("\"severity\": \"alert\"", "\"severity\": \"detection\"");
        assert!(matches!(
            decode(&mut d, &as_new_detection),
            Decoded::Ignored(w) if w.contains("detection")
        ));
        let Decoded::Event(e) = decode(&mut d, UPGRADE) else {
            panic!("the upgrade mails")
        };
        assert_eq!(e.severity.as_deref(), Some("alert"));
        assert_eq!(e.label.as_deref(), Some("person, cat"));
        assert_eq!(e.zones, vec!["lawn"]);
        assert_eq!(
            e.snapshot,
            SnapshotSource::FrigateEvent {
                event_id: "1739871002.771935-p0d4wn".into()
            }
        );
        assert_eq!(e.related_ids.len(), 2);
        assert!(matches!(decode(&mut d, UPGRADE), Decoded::Ignored(_)));
    }

    #[test]
    fn detections_mail_when_opted_in_and_sub_labels_show() {
        let mut d =
            FrigateReviews::new("frigate", "http://f", &["alert".into(), "detection".into()]);
        let det = NEW
            .replace("\"severity\": \"alert\"", "\"severity\": \"detection\"")
            .replace(
                "\"objects\": [\"person\"]",
                "\"objects\": [\"person-verified\"]",
            )
            .replace("\"sub_labels\": []", "\"sub_labels\": [\"Alice\"]");
        let Decoded::Event(e) = decode(&mut d, &det) else {
            panic!("detections are on")
        };
        assert_eq!(e.severity.as_deref(), Some("detection"));
        assert_eq!(e.summary(), "person Alice");
    }

    #[test]
    fn garbage_is_ignored() {
        let mut d = alerts();
        assert!(matches!(decode(&mut d, "{}"), Decoded::Malformed(_)));
        assert!(matches!(decode(&mut d, "\u{0}"), Decoded::Malformed(_)));
        let genai = NEW.replacen("\"new\"", "\"genai\"", 1);
        assert!(matches!(decode(&mut d, &genai), Decoded::Ignored(_)));
    }
}
