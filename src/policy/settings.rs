//! The policy configuration, checked and resolved once at start: each camera's merged
//! settings (camera over `defaults:` over built-in defaults), schedules in their time zone,
//! and the priority rules. Every error names the key to fix.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{CameraConfig, Cameras, Config, ConfigError, DigestConfig};
use crate::event::Event;

use super::bucket::BucketSpec;
use super::filter::Filters;
use super::schedule::{self, Schedules, Window};

/// One camera's effective settings.
#[derive(Debug, Clone)]
pub struct CameraPolicy {
    pub filters: Filters,
    pub cooldown: Duration,
    pub bucket: Option<BucketSpec>,
    pub active: Vec<String>,
    pub quiet: Vec<String>,
    pub quiet_digest: bool,
}

/// One `priority:` rule.
#[derive(Debug, Clone)]
pub struct Priority {
    cameras: Vec<String>,
    labels: Vec<String>,
    sub_labels: Vec<String>,
    min_score: Option<f32>,
    during: Option<String>,
}

impl Priority {
    pub fn matches(&self, ev: &Event, schedules: &Schedules, now: jiff::Timestamp) -> bool {
        let any = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        any(&self.cameras, Some(&ev.camera))
            && any(&self.labels, Some(ev.label.as_deref().unwrap_or("motion")))
            && (self.sub_labels.is_empty()
                || ev.recognised().any(|n| any(&self.sub_labels, Some(n))))
            && self
                .min_score
                .is_none_or(|m| ev.score.is_some_and(|s| s >= m))
            && self.during.as_ref().is_none_or(|w| {
                schedules
                    .first_containing(std::slice::from_ref(w), now)
                    .is_some()
            })
    }
}

/// Everything the policy stage needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub defaults: CameraPolicy,
    pub cameras: HashMap<String, CameraPolicy>,
    pub cameras_only: bool,
    pub daily_limit: u32,
    pub digest: DigestConfig,
    pub priority: Vec<Priority>,
    pub schedules: Schedules,
    /// The control topic prefix, when control topics are on.
    pub control_prefix: Option<String>,
    /// Where arm/snooze state and the daily budget survive restarts.
    pub state_file: PathBuf,
}

impl Settings {
    pub fn from_config(cfg: &Config, cams: &Cameras) -> Result<Settings, ConfigError> {
        let tz = schedule::time_zone(cfg.timezone.as_deref())?;
        let mut windows = BTreeMap::new();
        for (name, w) in &cfg.schedules {
            windows.insert(name.clone(), Window::parse(name, w)?);
        }
        let schedules = Schedules::new(tz, windows);
        let base = cfg.rate_limit.cooldown.0;
        let defaults = camera_policy(&cams.defaults, "defaults", base)?;
        let mut cameras = HashMap::new();
        for (name, merged) in &cams.listed {
            let key = format!("cameras.{name}");
            cameras.insert(name.clone(), camera_policy(merged, &key, base)?);
        }
        if cfg.daily_limit == 0 {
            return Err(ConfigError::invalid(
                "daily_limit: must be at least 1; consumer Gmail allows about 500 mails a day",
            ));
        }
        if cfg.digest.max_images > 20 {
            return Err(ConfigError::invalid(format!(
                "digest.max_images: {} is too many for one mail; use at most 20",
                cfg.digest.max_images
            )));
        }
        if cfg.digest.image_size < 32 {
            return Err(ConfigError::invalid(
                "digest.image_size: use at least 32 (pixels)",
            ));
        }
        let mut priority = Vec::new();
        for (i, r) in cfg.priority.iter().enumerate() {
            let key = format!("priority[{i}]");
            if let Some(w) = &r.during {
                if !schedules.has(w) {
                    return Err(unknown_window(&key, "during", w, cfg));
                }
            }
            priority.push(Priority {
                cameras: r.cameras.0.clone(),
                labels: r.labels.0.clone(),
                sub_labels: r.sub_labels.0.clone(),
                min_score: r.min_score,
                during: r.during.clone(),
            });
        }
        let prefix = cfg.control_topic_prefix();
        if cfg.control.enabled && (prefix.is_empty() || prefix.contains(['+', '#'])) {
            let from = match cfg.control.topic_prefix {
                Some(_) => "",
                None => " (unset, so the instance id: instance_id, else mqtt.client_id)",
            };
            return Err(ConfigError::invalid(format!(
                "control.topic_prefix{from}: {prefix:?} is not a topic prefix; set control.topic_prefix to e.g. snapmail (no + or #)"
            )));
        }
        let settings = Settings {
            defaults,
            cameras,
            cameras_only: cfg.cameras_only,
            daily_limit: cfg.daily_limit,
            digest: cfg.digest.clone(),
            priority,
            schedules,
            control_prefix: cfg.control.enabled.then(|| prefix.to_owned()),
            state_file: cfg.state_file(),
        };
        check_windows(&settings, cams, cfg)?;
        Ok(settings)
    }

    /// The camera's settings; `None` when `cameras_only` is set and it is not listed.
    pub fn camera(&self, name: &str) -> Option<&CameraPolicy> {
        match self.cameras.get(name) {
            Some(c) => Some(c),
            None if self.cameras_only => None,
            None => Some(&self.defaults),
        }
    }
}

fn unknown_window(key: &str, field: &str, name: &str, cfg: &Config) -> ConfigError {
    let known: Vec<&str> = cfg.schedules.keys().map(String::as_str).collect();
    ConfigError::invalid(format!(
        "{key}.{field}: {name:?} is not a window under schedules (defined: [{}]); add schedules.{name} or fix the name",
        known.join(", ")
    ))
}

/// Every `active`/`quiet` name must be a defined window.
fn check_windows(s: &Settings, cams: &Cameras, cfg: &Config) -> Result<(), ConfigError> {
    for (key, c) in cams.keyed() {
        for (field, names) in [("active", &c.active), ("quiet", &c.quiet)] {
            for n in names.iter().flat_map(|l| l.0.iter()) {
                if !s.schedules.has(n) {
                    return Err(unknown_window(&key, field, n, cfg));
                }
            }
        }
    }
    Ok(())
}

fn camera_policy(
    c: &CameraConfig,
    key: &str,
    fallback_cooldown: Duration,
) -> Result<CameraPolicy, ConfigError> {
    let filters = Filters::from_config(c, key)?;
    let bucket = if c.burst.is_some() || c.interval.is_some() {
        let burst = c.burst.unwrap_or(1);
        let burst = NonZeroU32::new(burst).ok_or_else(|| {
            ConfigError::invalid(format!("{key}.burst: must be at least 1 (remove burst and interval to turn the bucket off)"))
        })?;
        let interval = c.interval.map_or(Duration::from_secs(600), |d| d.0);
        if interval.is_zero() {
            return Err(ConfigError::invalid(format!(
                "{key}.interval: must be longer than 0s, e.g. 10m"
            )));
        }
        Some(BucketSpec { burst, interval })
    } else {
        None
    };
    Ok(CameraPolicy {
        filters,
        cooldown: c.cooldown.map_or(fallback_cooldown, |d| d.0),
        bucket,
        active: c.active.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
        quiet: c.quiet.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
        quiet_digest: c.quiet_digest.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        crate::config::load_from(Some(&p), Some(HashMap::new()))
    }

    fn settings(cfg: &Config) -> Result<Settings, ConfigError> {
        Settings::from_config(cfg, &cfg.resolved_cameras())
    }

    #[test]
    fn unknown_window_names_the_key() {
        let e = load("schedules:\n  night: {from: '22:00', to: '06:00'}\ncameras:\n  yard:\n    active: [nite]\n")
            .and_then(|c| settings(&c))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cameras.yard.active: \"nite\""), "{e}");
        assert!(e.contains("[night]"), "{e}");
    }

    #[test]
    fn inheritance_and_cameras_only() {
        let cfg = load(
            "cameras_only: true\ndefaults:\n  min_score: 0.6\n  burst: 3\n  interval: 5m\ncameras:\n  door:\n    cooldown: 10s\n    to: [a@example.com]\n",
        )
        .unwrap();
        let s = settings(&cfg).unwrap();
        let door = s.camera("door").unwrap();
        assert_eq!(door.cooldown, Duration::from_secs(10));
        assert_eq!(
            door.bucket,
            Some(BucketSpec {
                burst: NonZeroU32::new(3).unwrap(),
                interval: Duration::from_secs(300)
            })
        );
        assert!(s.camera("street").is_none());
    }

    #[test]
    fn multi_camera_example_loads() {
        let env = HashMap::from([
            ("SNAPMAIL__SMTP__PASSWORD_FILE".to_string(), String::new()),
            (
                "SNAPMAIL__SMTP__PASSWORD".to_string(),
                "abcd efgh ijkl mnop".to_string(),
            ),
        ]);
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/multi-camera.yaml");
        let cfg = crate::config::load_from(Some(&path), Some(env)).unwrap();
        let s = settings(&cfg).unwrap();
        let door = s.camera("front_door").unwrap();
        assert_eq!(door.cooldown, Duration::from_secs(300));
        assert_eq!(
            s.camera("backyard").unwrap().active,
            vec!["night".to_string()]
        );
        let garage = s.camera("garage").unwrap();
        assert!(garage.quiet_digest);
        // Inherited from defaults.
        assert_eq!(garage.cooldown, Duration::from_secs(120));
        assert_eq!(s.priority.len(), 1);
        assert_eq!(cfg.camera("backyard").max_width, Some(800));
    }
}
