//! Per-camera event filters: labels, score, zones, sub-labels, severity, stationary.
//!
//! [`Filters::check`] names the [`Rule`] that rejected an event (`min_score 0.80`, …) so the
//! log line tells the user which key to change. Names compare case-insensitively: Frigate
//! labels are lower case, but people write "Person" in YAML.
//!
//! `sub_labels` and `ignore_sub_labels` match what was recognised: the sub-label (a known
//! face, the owner of a known plate) or the licence plate as read, so `sub_labels: [KX21ZPT]`
//! works whether Frigate knows the plate or not. The payload text a rule names in the log is
//! cleaned ([`crate::text`]).

use super::rule::Rule;
use crate::config::{CameraConfig, ConfigError, ZonesMatch};
use crate::event::Event;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    labels: Vec<String>,
    ignore_labels: Vec<String>,
    min_score: Option<f32>,
    zones: Vec<String>,
    zones_match: ZonesMatch,
    sub_labels: Vec<String>,
    ignore_sub_labels: Vec<String>,
    severity: Vec<String>,
    ignore_stationary: bool,
}

fn list(l: &Option<crate::config::StringList>) -> Vec<String> {
    l.as_ref()
        .map(|l| l.0.iter().map(|s| s.to_lowercase()).collect())
        .unwrap_or_default()
}

fn has(list: &[String], v: &str) -> bool {
    let v = v.to_lowercase();
    list.contains(&v)
}

/// Longest payload value a rule repeats in the log, in characters.
const SHOWN: usize = 100;

/// A payload value as a log line may show it.
fn shown(v: &str) -> String {
    crate::text::one_line(v, SHOWN)
}

impl Filters {
    /// From merged camera settings; `key` (`cameras.driveway`) prefixes error messages.
    pub fn from_config(c: &CameraConfig, key: &str) -> Result<Filters, ConfigError> {
        if let Some(s) = c.min_score {
            if !(0.0..=1.0).contains(&s) {
                return Err(ConfigError::invalid(format!(
                    "{key}.min_score: {s} is outside 0..1; write 0.7 for 70%"
                )));
            }
        }
        let severity = list(&c.severity);
        if let Some(bad) = severity
            .iter()
            .find(|s| !matches!(s.as_str(), "alert" | "detection"))
        {
            return Err(ConfigError::invalid(format!(
                "{key}.severity: {bad:?} is not a severity; use alert and/or detection"
            )));
        }
        Ok(Filters {
            labels: list(&c.labels),
            ignore_labels: list(&c.ignore_labels),
            min_score: c.min_score,
            zones: list(&c.zones),
            zones_match: c.zones_match.unwrap_or_default(),
            sub_labels: list(&c.sub_labels),
            ignore_sub_labels: list(&c.ignore_sub_labels),
            severity,
            ignore_stationary: c.ignore_stationary.unwrap_or(false),
        })
    }

    /// `Ok` if the event may mail, else the rule that filtered it.
    pub fn check(&self, ev: &Event) -> Result<(), Rule> {
        let label = ev.label.as_deref().unwrap_or("motion");
        if !self.labels.is_empty() && !has(&self.labels, label) {
            return Err(Rule::Labels {
                label: shown(label),
                allowed: self.labels.clone(),
            });
        }
        if has(&self.ignore_labels, label) {
            return Err(Rule::IgnoreLabels {
                label: shown(label),
            });
        }
        if let (Some(min), Some(score)) = (self.min_score, ev.score) {
            if score < min {
                return Err(Rule::MinScore { score, min });
            }
        }
        if !self.zones.is_empty() {
            let entered = |z: &String| ev.zones.iter().any(|e| e.to_lowercase() == *z);
            let ok = match self.zones_match {
                ZonesMatch::Any => self.zones.iter().any(entered),
                ZonesMatch::All => self.zones.iter().all(entered),
            };
            if !ok {
                return Err(Rule::Zones {
                    all: self.zones_match == ZonesMatch::All,
                    wanted: self.zones.clone(),
                    entered: ev.zones.iter().map(|z| shown(z)).collect(),
                });
            }
        }
        if let Some(name) = ev.recognised().find(|n| has(&self.ignore_sub_labels, n)) {
            return Err(Rule::IgnoreSubLabels {
                sub_label: shown(name),
            });
        }
        if !self.sub_labels.is_empty() && !ev.recognised().any(|n| has(&self.sub_labels, n)) {
            let seen: Vec<String> = ev.recognised().map(shown).collect();
            return Err(Rule::SubLabels {
                sub_label: (!seen.is_empty()).then(|| seen.join(" / ")),
                allowed: self.sub_labels.clone(),
            });
        }
        // Sources without a severity (plain events, other cameras) are not filtered by it.
        if let Some(sev) = &ev.severity {
            if !self.severity.is_empty() && !has(&self.severity, sev) {
                return Err(Rule::Severity {
                    severity: shown(sev),
                    allowed: self.severity.clone(),
                });
            }
        }
        if self.ignore_stationary && ev.stationary {
            return Err(Rule::Stationary);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringList;

    fn sl(v: &[&str]) -> Option<StringList> {
        Some(StringList(v.iter().map(|s| s.to_string()).collect()))
    }

    fn ev(label: &str, score: f32, zones: &[&str]) -> Event {
        let mut e = Event::new("test", "1", "cam");
        e.label = Some(label.into());
        e.score = Some(score);
        e.zones = zones.iter().map(|s| s.to_string()).collect();
        e
    }

    #[test]
    fn each_rule_names_itself() {
        let f = Filters::from_config(
            &CameraConfig {
                labels: sl(&["Person", "car"]),
                min_score: Some(0.7),
                zones: sl(&["porch", "walkway"]),
                zones_match: Some(ZonesMatch::All),
                ignore_sub_labels: sl(&["Alice"]),
                severity: sl(&["alert"]),
                ignore_stationary: Some(true),
                ..Default::default()
            },
            "defaults",
        )
        .unwrap();
        let ok = ev("person", 0.8, &["porch", "walkway"]);
        assert_eq!(f.check(&ok), Ok(()));
        let rule = |e: Event| f.check(&e).unwrap_err().to_string();
        assert!(rule(ev("dog", 0.9, &["porch", "walkway"])).starts_with("labels:"));
        assert!(rule(ev("person", 0.5, &["porch", "walkway"])).starts_with("min_score:"));
        assert!(rule(ev("person", 0.9, &["porch"])).starts_with("zones (all"));
        let mut alice = ok.clone();
        alice.sub_label = Some("alice".into());
        assert!(rule(alice).starts_with("ignore_sub_labels:"));
        let mut det = ok.clone();
        det.severity = Some("detection".into());
        assert!(rule(det).starts_with("severity:"));
        let mut parked = ok.clone();
        parked.stationary = true;
        assert!(rule(parked).starts_with("ignore_stationary"));
    }

    #[test]
    fn zones_any_sub_labels_only_and_ignore_labels() {
        let f = Filters::from_config(
            &CameraConfig {
                ignore_labels: sl(&["cat"]),
                zones: sl(&["porch", "walkway"]),
                sub_labels: sl(&["Bob"]),
                ..Default::default()
            },
            "defaults",
        )
        .unwrap();
        let mut bob = ev("person", 0.9, &["walkway"]);
        bob.sub_label = Some("Bob".into());
        assert_eq!(f.check(&bob), Ok(()));
        assert!(f
            .check(&ev("person", 0.9, &["walkway"]))
            .unwrap_err()
            .to_string()
            .starts_with("sub_labels:"));
        let mut cat = bob.clone();
        cat.label = Some("cat".into());
        assert!(f
            .check(&cat)
            .unwrap_err()
            .to_string()
            .starts_with("ignore_labels"));
        let mut street = bob.clone();
        street.zones.clear();
        assert!(f
            .check(&street)
            .unwrap_err()
            .to_string()
            .starts_with("zones (any"));
    }

    #[test]
    fn sub_label_rules_match_licence_plates_too() {
        let only = Filters::from_config(
            &CameraConfig {
                sub_labels: sl(&["KX21ZPT", "Bob's van"]),
                ..Default::default()
            },
            "cameras.street",
        )
        .unwrap();
        let mut car = ev("car", 0.9, &[]);
        car.plate = Some("kx21zpt".into());
        assert_eq!(only.check(&car), Ok(()), "the plate as read");
        let mut known = ev("car", 0.9, &[]);
        known.sub_label = Some("Bob's van".into());
        known.plate = Some("AB12CDE".into());
        assert_eq!(only.check(&known), Ok(()), "the owner of a known plate");
        let mut stranger = ev("car", 0.9, &[]);
        stranger.plate = Some("ZZ99ZZZ".into());
        let why = only.check(&stranger).unwrap_err().to_string();
        assert!(why.starts_with("sub_labels: \"ZZ99ZZZ\""), "{why}");

        let ignore = Filters::from_config(
            &CameraConfig {
                ignore_sub_labels: sl(&["KX21ZPT"]),
                ..Default::default()
            },
            "defaults",
        )
        .unwrap();
        let why = ignore.check(&car).unwrap_err().to_string();
        assert_eq!(why, "ignore_sub_labels: \"kx21zpt\"");
        assert_eq!(ignore.check(&stranger), Ok(()));
    }

    #[test]
    fn rules_show_payload_text_cleaned() {
        let f = Filters::from_config(
            &CameraConfig {
                labels: sl(&["person"]),
                ..Default::default()
            },
            "defaults",
        )
        .unwrap();
        let e = ev("ca\u{202E}t\nX", 0.9, &[]);
        let why = f.check(&e).unwrap_err().to_string();
        assert!(!why.contains(['\u{202E}', '\n']), "{why:?}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Filters::from_config(
            &CameraConfig {
                min_score: Some(70.0),
                ..Default::default()
            },
            "cameras.door",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config: cameras.door.min_score"), "{e}");
        let e = Filters::from_config(
            &CameraConfig {
                severity: sl(&["urgent"]),
                ..Default::default()
            },
            "defaults",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config: defaults.severity"), "{e}");
    }
}
