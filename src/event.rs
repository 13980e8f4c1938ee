//! The normalized [`Event`]: what every source turns its messages into, and the only thing
//! the later stages (policy, snapshot, mail) know about where a notification came from.
//! Beside it, the [`Control`] commands (arm, disarm, snooze) that reach the policy stage the
//! same way, as one [`Input`] stream.
//!
//! The text of an event comes from payloads nobody vouches for. The camera name and id are
//! cleaned of control and invisible characters ([`crate::text`]) when the event is made,
//! since every log line, metric and mail names them; [`Event::summary`] cleans what it
//! shows.

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
    /// A recognised name, e.g. a known face or the owner Frigate knows a plate by.
    pub sub_label: Option<String>,
    /// A licence plate as read (Frigate 0.16+ `recognized_license_plate`).
    pub plate: Option<String>,
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
    /// `id` and `camera` lose control and invisible characters (a name a user could type
    /// in `cameras:` keeps every character).
    pub fn new(source: &'static str, id: impl Into<String>, camera: impl Into<String>) -> Event {
        Event {
            source,
            id: cleaned(id.into()),
            camera: cleaned(camera.into()),
            label: None,
            sub_label: None,
            plate: None,
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

/// `s` without control and invisible characters, reusing it when it has none.
fn cleaned(s: String) -> String {
    if s.chars()
        .any(|c| c.is_control() || crate::text::is_invisible(c))
    {
        crate::text::clean(&s)
    } else {
        s
    }
}

/// Longest label, sub-label or plate a summary shows, in characters.
const SUMMARY_PART: usize = 100;

impl Event {
    /// `person (78%)`, `person Alice`, `car KX21ZPT`, or `motion` — the short description
    /// used in subjects and logs: one line, without control or invisible characters.
    pub fn summary(&self) -> String {
        let part = |s: &str| crate::text::one_line(s, SUMMARY_PART);
        let mut s = part(self.label.as_deref().unwrap_or("motion"));
        for extra in self.recognised() {
            s.push(' ');
            s.push_str(&part(extra));
        }
        if let Some(score) = self.score {
            s.push_str(&format!(" ({:.0}%)", score * 100.0));
        }
        s
    }

    /// What was recognised: the sub-label, then the plate (when it says something else).
    /// Sub-label filters and priority rules match either.
    pub fn recognised(&self) -> impl Iterator<Item = &str> {
        let sub = self.sub_label.as_deref();
        let plate = self
            .plate
            .as_deref()
            .filter(|p| sub.is_none_or(|s| !s.eq_ignore_ascii_case(p)));
        sub.into_iter().chain(plate)
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
        let mut car = Event::new("test", "2", "street");
        car.label = Some("car".into());
        car.plate = Some("KX21ZPT".into());
        car.score = Some(0.93);
        assert_eq!(car.summary(), "car KX21ZPT (93%)");
        car.sub_label = Some("Bob's van".into());
        assert_eq!(car.summary(), "car Bob's van KX21ZPT (93%)");
        assert_eq!(
            car.recognised().collect::<Vec<_>>(),
            ["Bob's van", "KX21ZPT"]
        );
        // Older Frigate put the plate itself in the sub-label: shown once.
        car.sub_label = Some("kx21zpt".into());
        assert_eq!(car.recognised().collect::<Vec<_>>(), ["kx21zpt"]);
    }

    #[test]
    fn payload_text_is_cleaned_for_logs_and_subjects() {
        let mut e = Event::new("test", "1\u{202E}2\r\n", "drive\u{202E}yaw\u{200B}");
        assert_eq!(e.camera, "driveyaw");
        assert_eq!(e.id, "12  ");
        e.label = Some("per\u{2066}son\nX-Injected: yes".into());
        e.sub_label = Some("x".repeat(10_000));
        let s = e.summary();
        assert!(s.starts_with("person X-Injected: yes xxx"), "{s}");
        assert!(s.chars().count() < 250, "{}", s.len());
        assert!(!s
            .chars()
            .any(|c| c.is_control() || crate::text::is_invisible(c)));
    }
}
