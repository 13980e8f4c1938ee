//! Frigate's `<prefix>/<camera>/<label>/snapshot`: the best snapshot of the latest object as
//! raw JPEG bytes, so no HTTP request is needed.
//!
//! Frigate publishes these retained, and the broker replays the last one of every camera
//! and label on each (re)connect; a retained message is therefore a replay, never news, and
//! is ignored. The messages carry no event id, so each one is its own event and the per-camera
//! cooldown is what limits the mail.
//!
//! A picture over `max_bytes` is never mailed. Frigate sends one per object, so the first
//! on each topic (a retained replay too: it shows the size the next ones will have) is
//! logged as a warning naming `sources[N].max_bytes`; the rest only at debug level.

use std::collections::HashSet;

use tracing::warn;

use super::{unique_id, wildcards};
use crate::config::sources::FrigateSnapshotSource;
use crate::event::{Event, SnapshotSource};
use crate::mqtt::{Decoded, Decoder, Message};

struct Settings {
    cameras: Vec<String>,
    labels: Vec<String>,
    max_bytes: usize,
}

/// Decoder for `<prefix>/+/+/snapshot`.
pub struct FrigateSnapshot {
    /// The source's place in `sources:`, for the key in messages.
    index: usize,
    filter: String,
    settings: Settings,
    /// Topics whose oversized picture was already logged as a warning.
    warned: HashSet<String>,
}

impl FrigateSnapshot {
    pub fn new(index: usize, topic_prefix: &str, cfg: &FrigateSnapshotSource) -> Self {
        FrigateSnapshot {
            index,
            warned: HashSet::new(),
            filter: format!("{}/+/+/snapshot", topic_prefix.trim_end_matches('/')),
            settings: Settings {
                cameras: cfg.cameras.0.clone(),
                labels: cfg.labels.0.clone(),
                max_bytes: cfg.max_bytes,
            },
        }
    }
}

impl Decoder for FrigateSnapshot {
    fn kind(&self) -> &'static str {
        "frigate_snapshot"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.filter.clone()]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        let Some(levels) = wildcards(&self.filter, msg.topic) else {
            return Decoded::Ignored("not a snapshot topic".into());
        };
        let (camera, label) = (levels[0], levels[1]);
        let s = &self.settings;
        if !s.cameras.is_empty() && !s.cameras.iter().any(|c| c == camera) {
            return Decoded::Ignored(format!("camera {camera} is not in this source's cameras"));
        }
        if !s.labels.is_empty() && !s.labels.iter().any(|l| l == label) {
            return Decoded::Ignored(format!("label {label} is not in this source's labels"));
        }
        if msg.payload.len() > s.max_bytes {
            let key = format!("sources[{}].max_bytes", self.index);
            if self.warned.insert(msg.topic.to_owned()) {
                warn!(
                    topic = msg.topic,
                    "frigate_snapshot: pictures on {} are not mailed: this one is {} bytes, over {key} ({}); raise {key} to mail them",
                    msg.topic,
                    msg.payload.len(),
                    s.max_bytes
                );
            }
            return Decoded::Ignored(format!(
                "snapshot of {camera}/{label} is {} bytes, over {key} ({})",
                msg.payload.len(),
                s.max_bytes
            ));
        }
        if msg.retained {
            return Decoded::Ignored(format!(
                "retained snapshot of {camera}/{label}: a replay of an old picture on (re)connect"
            ));
        }
        if !msg.payload.starts_with(&[0xFF, 0xD8]) {
            return Decoded::Malformed(format!(
                "payload on {} is not a JPEG (it does not start with FF D8)",
                msg.topic
            ));
        }
        let mut ev = Event::new(self.kind(), unique_id(self.kind(), camera), camera);
        ev.label = Some(label.to_owned());
        ev.snapshot = SnapshotSource::Inline(msg.payload.to_vec().into());
        Decoded::Event(Box::new(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> FrigateSnapshot {
        FrigateSnapshot::new(0, "frigate", &FrigateSnapshotSource::default())
    }

    const JPEG: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0xFF, 0xD9,
    ];

    #[test]
    fn live_snapshot_is_an_event_with_the_bytes() {
        let mut d = decoder();
        assert_eq!(d.topics(), vec!["frigate/+/+/snapshot".to_string()]);
        let Decoded::Event(e) = d.decode(Message {
            topic: "frigate/driveway/person/snapshot",
            payload: JPEG,
            retained: false,
        }) else {
            panic!("expected an event")
        };
        assert_eq!(e.camera, "driveway");
        assert_eq!(e.label.as_deref(), Some("person"));
        assert_eq!(e.snapshot, SnapshotSource::Inline(JPEG.to_vec().into()));
    }

    #[test]
    fn retained_replays_oversize_and_non_jpeg_are_ignored() {
        let mut d = decoder();
        let m = |payload: &'static [u8], retained| Message {
            topic: "frigate/driveway/person/snapshot",
            payload,
            retained,
        };
        assert!(matches!(d.decode(m(JPEG, true)), Decoded::Ignored(w) if w.contains("retained")));
        assert!(
            matches!(d.decode(m(b"1", false)), Decoded::Malformed(w) if w.contains("not a JPEG"))
        );
        let mut small = FrigateSnapshot::new(
            3,
            "frigate",
            &FrigateSnapshotSource {
                max_bytes: 4,
                ..Default::default()
            },
        );
        assert!(
            matches!(small.decode(m(JPEG, false)), Decoded::Ignored(w) if w.contains("over sources[3].max_bytes (4)"))
        );
    }

    #[test]
    fn simple_topics_fixture_only_the_snapshot_line_is_for_this_source() {
        // Every line of frigate-simple-topics.txt: only `<cam>/<label>/snapshot` matches
        // the filter; motion, counts, availability and states are not subscribed to.
        let d = decoder();
        let fixture = include_str!("../../tests/fixtures/frigate-simple-topics.txt");
        let matched: Vec<&str> = fixture
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split('\t').next().unwrap())
            .filter(|t| crate::mqtt::matches_any(t, &d.topics()))
            .collect();
        assert_eq!(matched, vec!["frigate/driveway/person/snapshot"]);
    }
}
