//! Arm / disarm / snooze: the MQTT control topics, the per-camera state they change, and
//! the small state file that keeps it across restarts.
//!
//! Topics (prefix `control.topic_prefix`, default `snapmail`):
//! `<prefix>/<camera>/set` `ON`|`OFF`, `<prefix>/<camera>/snooze` `<minutes>` (0 cancels),
//! with `all` as the camera meaning every camera. The state is published retained on
//! `<prefix>/<camera>/state`: `{"state", "armed", "snoozed_until", "snooze_minutes"}`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::{Control, ControlAction};
use crate::mqtt::{Decoded, Decoder, Message, Outgoing};

/// Decodes `<prefix>/<camera>/set` and `<prefix>/<camera>/snooze`.
pub struct ControlDecoder {
    prefix: String,
}

impl ControlDecoder {
    pub fn new(prefix: &str) -> ControlDecoder {
        ControlDecoder {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }
}

impl Decoder for ControlDecoder {
    fn kind(&self) -> &'static str {
        "control"
    }

    fn topics(&self) -> Vec<String> {
        vec![
            format!("{}/+/set", self.prefix),
            format!("{}/+/snooze", self.prefix),
        ]
    }

    fn decode(&mut self, msg: Message<'_>) -> Decoded {
        let Some(rest) = msg
            .topic
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Decoded::Ignored("not a control topic".into());
        };
        let Some((camera, command)) = rest.split_once('/') else {
            return Decoded::Ignored("not a control topic".into());
        };
        let camera = match camera {
            "all" => None,
            c => Some(c.to_owned()),
        };
        let payload = String::from_utf8_lossy(msg.payload);
        let payload = payload.trim();
        let action = match command {
            "set" => match payload.to_ascii_uppercase().as_str() {
                "ON" | "ARM" | "TRUE" | "1" => ControlAction::Arm(true),
                "OFF" | "DISARM" | "FALSE" | "0" => ControlAction::Arm(false),
                _ => {
                    return Decoded::Malformed(format!(
                        "{}: payload {payload:?} is not ON or OFF",
                        msg.topic
                    ))
                }
            },
            "snooze" => {
                // A retained snooze would restart itself on every reconnect; only a fresh
                // command snoozes.
                if msg.retained {
                    return Decoded::Ignored(format!(
                        "{}: retained snooze ignored; publish snooze commands without the retain flag",
                        msg.topic
                    ));
                }
                match minutes(payload) {
                    Some(m) if m <= 366 * 24 * 60 => {
                        ControlAction::Snooze(Duration::from_secs(m * 60))
                    }
                    _ => {
                        return Decoded::Malformed(format!(
                            "{}: payload {payload:?} is not a number of minutes up to 527040 (0 cancels)",
                            msg.topic
                        ))
                    }
                }
            }
            _ => return Decoded::Ignored(format!("{}: unknown command", msg.topic)),
        };
        Decoded::Control(Control { camera, action })
    }
}

/// Whole minutes: `30`, or `30.0` as a number entity may send it.
fn minutes(payload: &str) -> Option<u64> {
    if let Ok(m) = payload.parse::<u64>() {
        return Some(m);
    }
    let f = payload.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
}

/// One camera's arm/snooze state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraState {
    pub armed: bool,
    /// Unix seconds; mail nothing before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<i64>,
}

impl Default for CameraState {
    fn default() -> Self {
        CameraState {
            armed: true,
            snoozed_until: None,
        }
    }
}

/// What a camera's state means right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Armed,
    Disarmed,
    Snoozed { until: Timestamp },
}

impl CameraState {
    pub fn status(&self, now: Timestamp) -> Status {
        if !self.armed {
            return Status::Disarmed;
        }
        match self
            .snoozed_until
            .and_then(|s| Timestamp::from_second(s).ok())
        {
            Some(until) if until > now => Status::Snoozed { until },
            _ => Status::Armed,
        }
    }
}

/// Every camera's state; `all` is what cameras without an entry of their own have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    #[serde(default)]
    pub all: CameraState,
    #[serde(default)]
    pub cameras: BTreeMap<String, CameraState>,
}

impl ArmState {
    pub fn get(&self, camera: &str) -> CameraState {
        self.cameras.get(camera).copied().unwrap_or(self.all)
    }

    /// Apply a command at `now`. `known` are the cameras `all` should reach besides
    /// those with an entry already. Returns the cameras whose state changed.
    pub fn apply<'a>(
        &mut self,
        cmd: &Control,
        now: Timestamp,
        known: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        let change = |s: &mut CameraState| {
            let before = *s;
            match cmd.action {
                ControlAction::Arm(on) => {
                    s.armed = on;
                    s.snoozed_until = None;
                }
                ControlAction::Snooze(d) if d.is_zero() => s.snoozed_until = None,
                ControlAction::Snooze(d) => {
                    s.snoozed_until = Some(now.as_second().saturating_add(d.as_secs() as i64));
                }
            }
            before != *s
        };
        match &cmd.camera {
            Some(camera) => {
                let mut s = self.get(camera);
                let changed = change(&mut s);
                self.cameras.insert(camera.clone(), s);
                if changed {
                    vec![camera.clone()]
                } else {
                    Vec::new()
                }
            }
            None => {
                // Known cameras get an entry with the state they had, so the change shows.
                for k in known {
                    self.cameras.entry(k.clone()).or_insert(self.all);
                }
                change(&mut self.all);
                let all = self.all;
                let mut changed = Vec::new();
                for (name, s) in self.cameras.iter_mut() {
                    let before = *s;
                    *s = all;
                    // `all` sets every camera to the same state, including their snoozes.
                    if before != *s {
                        changed.push(name.clone());
                    }
                }
                changed
            }
        }
    }

    /// Clear snoozes that ended by `now`; returns the cameras that woke up.
    pub fn expire(&mut self, now: Timestamp) -> Vec<String> {
        let over = |s: &CameraState| s.snoozed_until.is_some_and(|u| u <= now.as_second());
        if over(&self.all) {
            self.all.snoozed_until = None;
        }
        let mut woke = Vec::new();
        for (name, s) in self.cameras.iter_mut() {
            if over(s) {
                s.snoozed_until = None;
                woke.push(name.clone());
            }
        }
        woke
    }

    /// The retained message for `<prefix>/<camera>/state`.
    pub fn state_message(&self, prefix: &str, camera: &str, now: Timestamp) -> Option<Outgoing> {
        // A camera name with MQTT wildcards or separators cannot be a topic level.
        if camera.is_empty() || camera.contains(['+', '#', '/']) {
            return None;
        }
        let s = self.get(camera);
        let (state, until, minutes) = match s.status(now) {
            Status::Armed => ("armed", None, 0),
            Status::Disarmed => ("disarmed", None, 0),
            Status::Snoozed { until } => {
                // Minutes left, rounded up: what Home Assistant's snooze number shows.
                let secs = until.as_second().saturating_sub(now.as_second()).max(0);
                ("snoozed", Some(until.to_string()), (secs + 59) / 60)
            }
        };
        let payload = serde_json::json!({
            "state": state,
            "armed": s.armed,
            "snoozed_until": until,
            "snooze_minutes": minutes,
        });
        Some(Outgoing {
            topic: format!("{}/{camera}/state", prefix.trim_end_matches('/')),
            payload: payload.to_string().into_bytes(),
            retain: true,
        })
    }
}

/// The state file: arm/snooze state and the daily budget's send times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub arm: ArmState,
    /// Unix seconds of mails counted against `daily_limit` in the last 24 h.
    #[serde(default)]
    pub daily_sent: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(topic: &str, payload: &str, retained: bool) -> Decoded {
        ControlDecoder::new("snapmail").decode(Message {
            topic,
            payload: payload.as_bytes(),
            retained,
        })
    }

    #[test]
    fn topics_and_payloads() {
        assert_eq!(
            decode("snapmail/garage/set", "OFF", false),
            Decoded::Control(Control {
                camera: Some("garage".into()),
                action: ControlAction::Arm(false)
            })
        );
        assert_eq!(
            decode("snapmail/all/set", " on\n", true),
            Decoded::Control(Control {
                camera: None,
                action: ControlAction::Arm(true)
            })
        );
        assert_eq!(
            decode("snapmail/door/snooze", "30", false),
            Decoded::Control(Control {
                camera: Some("door".into()),
                action: ControlAction::Snooze(Duration::from_secs(1800))
            })
        );
        assert!(matches!(
            decode("snapmail/door/snooze", "30", true),
            Decoded::Ignored(_)
        ));
        assert!(matches!(
            decode("snapmail/door/snooze", "soon", false),
            Decoded::Malformed(_)
        ));
        // Home Assistant's number entity may send a float.
        assert_eq!(
            decode("snapmail/door/snooze", "15.0", false),
            Decoded::Control(Control {
                camera: Some("door".into()),
                action: ControlAction::Snooze(Duration::from_secs(900))
            })
        );
        for bad in ["1.5", "-5", "NaN", "1e300"] {
            assert!(
                matches!(
                    decode("snapmail/door/snooze", bad, false),
                    Decoded::Malformed(_)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            decode("snapmail/door/set", "maybe", false),
            Decoded::Malformed(_)
        ));
    }

    #[test]
    fn snooze_expires_and_all_reaches_every_camera() {
        let now: Timestamp = "2026-11-23T20:00:00Z".parse().unwrap();
        let mut s = ArmState::default();
        let snooze = Control {
            camera: Some("garage".into()),
            action: ControlAction::Snooze(Duration::from_secs(600)),
        };
        assert_eq!(s.apply(&snooze, now, []), vec!["garage".to_string()]);
        let until = now + jiff::SignedDuration::from_mins(10);
        assert_eq!(s.get("garage").status(now), Status::Snoozed { until });
        let state = s.state_message("snapmail", "garage", now).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&state.payload).unwrap();
        assert_eq!(v["snoozed_until"], until.to_string());
        assert_eq!(v["snooze_minutes"], 10);
        assert_eq!(s.get("door").status(now), Status::Armed);
        assert!(s
            .expire(until - jiff::SignedDuration::from_secs(1))
            .is_empty());
        assert_eq!(s.expire(until), vec!["garage".to_string()]);
        assert_eq!(s.get("garage").status(until), Status::Armed);

        let off = Control {
            camera: None,
            action: ControlAction::Arm(false),
        };
        let known = ["door".to_string()];
        let mut changed = s.apply(&off, now, &known);
        changed.sort();
        assert_eq!(changed, vec!["door".to_string(), "garage".to_string()]);
        assert_eq!(s.get("never-seen").status(now), Status::Disarmed);
        let msg = s.state_message("snapmail", "door", now).unwrap();
        assert_eq!(msg.topic, "snapmail/door/state");
        assert!(msg.retain);
        assert!(String::from_utf8(msg.payload)
            .unwrap()
            .contains("\"disarmed\""));
    }
}
