//! The notification-policy part of the configuration: per-camera settings with inheritance
//! from `defaults:`, named schedule windows, priority rules, the global daily budget, the
//! digest of suppressed events and the MQTT control topics (arm/disarm/snooze).
//!
//! Every camera setting is optional so that `cameras.<name>` can override `defaults:`
//! field by field; [`CameraConfig::merged_over`] does the merge and [`Cameras`] holds the
//! result for every listed camera, resolved once; each stage turns it into checked runtime
//! values of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::types::{self, HumanDuration, StringList};

/// Settings of one camera (`cameras.<name>`) or of every camera (`defaults:`).
/// Unset fields inherit: camera → `defaults` → built-in default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    /// Recipients for this camera's mail (default: `smtp.to`).
    pub to: Option<StringList>,
    /// Only these labels mail (empty: all).
    pub labels: Option<StringList>,
    /// These labels never mail.
    pub ignore_labels: Option<StringList>,
    /// Lowest detection score (0..1) that mails; Frigate's `top_score` where present.
    pub min_score: Option<f32>,
    /// Only events that entered these zones mail (see `zones_match`).
    pub zones: Option<StringList>,
    pub zones_match: Option<ZonesMatch>,
    /// Only events with one of these sub-labels (known faces, plates) mail.
    pub sub_labels: Option<StringList>,
    /// Events with one of these sub-labels never mail.
    pub ignore_sub_labels: Option<StringList>,
    /// Only these Frigate review severities (`alert`, `detection`) mail.
    pub severity: Option<StringList>,
    /// Stationary objects (a parked car) never mail.
    pub ignore_stationary: Option<bool>,
    /// At most one mail per cooldown (default `rate_limit.cooldown`).
    pub cooldown: Option<HumanDuration>,
    /// Token bucket: this many mails at once …
    pub burst: Option<u32>,
    /// … and one more token per interval.
    pub interval: Option<HumanDuration>,
    /// Names of `schedules` windows: mail only inside one of them.
    pub active: Option<StringList>,
    /// Names of `schedules` windows: never mail inside them.
    pub quiet: Option<StringList>,
    /// Collect events from quiet windows and mail a digest when the window ends.
    pub quiet_digest: Option<bool>,
    /// Picture size for this camera's mails (default `snapshot.max_width`/`max_height`).
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
}

macro_rules! merge_fields {
    ($over:ident, $base:ident, $($f:ident),*) => {
        CameraConfig { $($f: $over.$f.clone().or_else(|| $base.$f.clone()),)* }
    };
}

impl CameraConfig {
    /// `self` with every unset field taken from `base`.
    pub fn merged_over(&self, base: &CameraConfig) -> CameraConfig {
        let over = self;
        merge_fields!(
            over,
            base,
            to,
            labels,
            ignore_labels,
            min_score,
            zones,
            zones_match,
            sub_labels,
            ignore_sub_labels,
            severity,
            ignore_stationary,
            cooldown,
            burst,
            interval,
            active,
            quiet,
            quiet_digest,
            max_width,
            max_height
        )
    }
}

/// Every camera's settings with inheritance applied: `defaults:` for cameras not listed, and
/// each `cameras.<name>` merged over it. Built once ([`super::Config::resolved_cameras`]) and
/// read by every stage that has per-camera settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cameras {
    pub defaults: CameraConfig,
    pub listed: BTreeMap<String, CameraConfig>,
}

impl Cameras {
    /// The settings of `camera`: its merged entry, or `defaults:` when it is not listed.
    pub fn get(&self, camera: &str) -> &CameraConfig {
        self.listed.get(camera).unwrap_or(&self.defaults)
    }

    /// The listed cameras with their config key (`cameras.<name>`), then `defaults`.
    pub fn keyed(&self) -> impl Iterator<Item = (String, &CameraConfig)> {
        std::iter::once(("defaults".to_owned(), &self.defaults)).chain(
            self.listed
                .iter()
                .map(|(name, c)| (format!("cameras.{name}"), c)),
        )
    }
}

/// Whether an event must have entered any or all of the listed zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZonesMatch {
    #[default]
    Any,
    All,
}

impl<'de> Deserialize<'de> for ZonesMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        types::choice(
            d,
            &[("any", ZonesMatch::Any), ("all", ZonesMatch::All)],
            "use any or all",
        )
    }
}

/// A named time window (`schedules.<name>`), in `timezone`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Weekdays the window starts on (`mon`…`sun`, `weekdays`, `weekends`); default every day.
    #[serde(default)]
    pub days: StringList,
    /// Start, `HH:MM` local time.
    pub from: String,
    /// End, `HH:MM`; earlier than `from` means the window runs past midnight.
    pub to: String,
}

/// `priority:` — events matching one rule skip the cooldown and the token bucket
/// (never the daily budget, filters, schedules or snooze).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityRule {
    /// Cameras the rule applies to (empty: all).
    pub cameras: StringList,
    /// Labels that match (empty: any).
    pub labels: StringList,
    /// Sub-labels that match (empty: any).
    pub sub_labels: StringList,
    pub min_score: Option<f32>,
    /// A `schedules` window the event must fall in.
    pub during: Option<String>,
}

/// `digest:` — what happens to events the rate limits suppressed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    pub enabled: bool,
    /// Send the digest at the latest this long after the first suppressed event, even
    /// if the camera's cooldown or bucket would still hold it back.
    pub max_delay: HumanDuration,
    /// At most this many snapshots in one digest.
    pub max_images: usize,
    /// Digest pictures fit inside this many pixels on each side.
    pub image_size: u32,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            enabled: true,
            max_delay: HumanDuration::secs(30 * 60),
            max_images: 6,
            image_size: 480,
        }
    }
}

/// `control:` — arm/disarm/snooze over MQTT and where that state is kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub enabled: bool,
    /// `<prefix>/<camera>/set`, `<prefix>/<camera>/snooze`, `<prefix>/<camera>/state`.
    /// Unset: the instance id ([`super::Config::control_topic_prefix`]).
    pub topic_prefix: Option<String>,
    /// Default: `state.json` next to `outbox.dir`.
    pub state_file: Option<PathBuf>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            topic_prefix: None,
            state_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_overrides_defaults_field_by_field() {
        let defaults = CameraConfig {
            min_score: Some(0.6),
            labels: Some(StringList(vec!["person".into(), "car".into()])),
            cooldown: Some(HumanDuration::secs(60)),
            ..Default::default()
        };
        let cam = CameraConfig {
            min_score: Some(0.8),
            ..Default::default()
        };
        let m = cam.merged_over(&defaults);
        assert_eq!(m.min_score, Some(0.8));
        assert_eq!(m.labels, defaults.labels);
        assert_eq!(m.cooldown, Some(HumanDuration::secs(60)));
        assert_eq!(m.burst, None);
    }
}
