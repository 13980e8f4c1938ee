//! The normalized [`Event`]: what every source turns its messages into, and the only thing
//! the later stages (policy, snapshot, mail) know about where a notification came from.
//! Beside it, the [`Control`] commands (arm, disarm, snooze) that reach the policy stage the
//! same way, as one [`Input`] stream.

use std::time::SystemTime;

use crate::secret::Secret;

/// Where the picture for an event comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotSource {
    /// Frigate's `GET /api/events/<id>/snapshot.jpg`.
    FrigateEvent { event_id: String },
    /// Image bytes that arrived with the message (shared, not copied, on their way to the
    /// image worker).
    Inline(bytes::Bytes),
    /// A URL from a message, fetched because `key` (`sources[N].allowed_hosts`) let its
    /// host and port through.
    Url { url: String, key: String },
    /// No picture; the mail says why.
    None { reason: String },
    /// Frigate's `GET /api/<camera>/latest.jpg` (the current frame).
    FrigateLatest { camera: String },
    /// A camera's own snapshot URL (e.g. Hikvision ISAPI `/ISAPI/Streaming/channels/101/picture`)
    /// behind HTTP Digest or Basic auth. The answer must be a JPEG: cameras report errors
    /// as an XML body with status 200.
    Camera {
        url: String,
        credentials: Option<Credentials>,
        /// The config key that holds these settings, named in errors
        /// (e.g. `sources[0].cameras.driveway`).
        key: String,
    },
}

/// A user name and password for a camera's HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// One thing that happened on one camera, in source-independent terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Which source produced it (`frigate_events`, …), for logs and metrics.
    pub source: &'static str,
    /// Stable identity used for de-duplication (e.g. the Frigate event id).
    pub id: String,
    pub camera: String,
    pub label: Option<String>,
    /// A recognised name or plate, e.g. a known face.
    pub sub_label: Option<String>,
    /// Detection confidence, 0..1.
    pub score: Option<f32>,
    pub zones: Vec<String>,
    /// When it started, as the source reports it.
    pub time: SystemTime,
    pub snapshot: SnapshotSource,
    /// A link to look at the event in the source's UI.
    pub link: Option<String>,
    /// Frigate review severity (`alert` / `detection`), where the source has one.
    pub severity: Option<String>,
    /// The object is not moving (a parked car), where the source knows.
    pub stationary: bool,
    /// Other ids naming the same happening (a review's detection event ids), so the
    /// policy's dedup mails it once even when several sources report it.
    pub related_ids: Vec<String>,
}

impl Event {
    /// A bare event for `camera`: no label, score or picture. Sources fill in the rest.
    pub fn new(source: &'static str, id: impl Into<String>, camera: impl Into<String>) -> Event {
        Event {
            source,
            id: id.into(),
            camera: camera.into(),
            label: None,
            sub_label: None,
            score: None,
            zones: Vec::new(),
            time: SystemTime::now(),
            snapshot: SnapshotSource::None {
                reason: "this source sends no picture".into(),
            },
            link: None,
            severity: None,
            stationary: false,
            related_ids: Vec::new(),
        }
    }
}

impl Event {
    /// `person (78%)`, `person`, or `motion` — the short description used in subjects and logs.
    pub fn summary(&self) -> String {
        let label = self.label.as_deref().unwrap_or("motion");
        let mut s = match &self.sub_label {
            Some(sub) => format!("{label} {sub}"),
            None => label.to_owned(),
        };
        if let Some(score) = self.score {
            s.push_str(&format!(" ({:.0}%)", score * 100.0));
        }
        s
    }
}

/// A command on snapmail's own control topics (arm/disarm/snooze).
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// `None`: every camera (`<prefix>/all/...`).
    pub camera: Option<String>,
    pub action: ControlAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ControlAction {
    /// `ON` arms the camera, `OFF` disarms it (and cancels a snooze either way).
    Arm(bool),
    /// Mail nothing for this long; zero cancels a snooze.
    Snooze(std::time::Duration),
}

/// What the MQTT task hands to the policy stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Event(Box<Event>),
    Control(Control),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let mut e = Event::new("test", "1", "driveway");
        e.label = Some("person".into());
        e.score = Some(0.78125);
        assert_eq!(e.summary(), "person (78%)");
        e.sub_label = Some("Alice".into());
        e.score = None;
        assert_eq!(e.summary(), "person Alice");
    }
}
