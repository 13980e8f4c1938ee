//! The mail stage's settings, resolved once: the sender and each camera's recipients
//! (`cameras.<name>.to`, else `defaults.to`, else `smtp.to`, else the login itself) as ready
//! [`Composer`]s, the time zone mails show times in (`timezone`, the same zone schedules
//! are read in), and the size limits of what is sent. Every mailbox is checked here, at
//! start, with the key it came from, and `frigate.public_url`, the base of the links mails
//! carry.

use std::collections::HashMap;

use super::compose::{parse_mailbox, Composer};
use crate::config::{CameraConfig, Cameras, Config, ConfigError};

/// Where preview mode (no `smtp` section) says its mail comes from and goes to.
const PREVIEW_FROM: &str = "snapmail <snapmail@localhost>";
const PREVIEW_TO: &str = "preview@localhost";

/// Everything the mail stage needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The composer of cameras without recipients of their own.
    default: Composer,
    by_camera: HashMap<String, Composer>,
    /// Largest formatted message (`smtp.max_message_bytes`; unbounded in preview mode).
    pub max_message_bytes: usize,
    /// Digest pictures fit inside this many pixels on each side (`digest.image_size`).
    pub digest_image_size: u32,
    /// The zone mails show times in (`timezone`).
    time_zone: jiff::tz::TimeZone,
}

impl Settings {
    pub fn from_config(config: &Config, cameras: &Cameras) -> Result<Settings, ConfigError> {
        let tz = config.time_zone()?;
        config.frigate.check_public_url()?;
        let (from, base) = match &config.smtp {
            Some(smtp) => {
                internet_mailbox("smtp.from", smtp.from_address())?;
                for to in smtp.recipients() {
                    internet_mailbox("smtp.to", &to)?;
                }
                (smtp.from_address().to_owned(), smtp.recipients())
            }
            None => (PREVIEW_FROM.to_owned(), vec![PREVIEW_TO.to_owned()]),
        };
        let composer = |c: &CameraConfig, key: &str| {
            let to =
                c.to.as_ref()
                    .filter(|l| !l.0.is_empty())
                    .map_or(base.clone(), |l| l.0.clone());
            for t in &to {
                internet_mailbox(&format!("{key}.to"), t)?;
            }
            Composer::new(&from, &to)
                .map(|c| c.with_time_zone(tz.clone()))
                .map_err(|e| ConfigError::invalid(format!("{key}.to: {e}")))
        };
        let default = composer(&cameras.defaults, "defaults")?;
        let mut by_camera = HashMap::new();
        for (name, c) in &cameras.listed {
            by_camera.insert(name.clone(), composer(c, &format!("cameras.{name}"))?);
        }
        Ok(Settings {
            default,
            by_camera,
            max_message_bytes: config
                .smtp
                .as_ref()
                .map_or(usize::MAX, |s| s.max_message_bytes),
            digest_image_size: config.digest.image_size,
            time_zone: tz,
        })
    }

    /// The zone mails show times in (`timezone`, else `TZ`, else the system's).
    pub fn time_zone(&self) -> &jiff::tz::TimeZone {
        &self.time_zone
    }

    /// The composer for `camera`'s mail.
    pub fn composer(&self, camera: &str) -> &Composer {
        self.by_camera.get(camera).unwrap_or(&self.default)
    }
}

/// `text` as a mailbox Gmail can deliver to: it parses, and its domain has a top-level
/// domain (`you@gmail` is a typo that Gmail would refuse at RCPT, one mail at a time).
/// `localhost` is allowed for local relays.
fn internet_mailbox(key: &str, text: &str) -> Result<(), ConfigError> {
    let mailbox = parse_mailbox(text).map_err(|e| ConfigError::invalid(format!("{key}: {e}")))?;
    let domain = mailbox.email.domain();
    let literal = domain.starts_with('[');
    if !domain.contains('.') && !literal && !domain.eq_ignore_ascii_case("localhost") {
        let hint = match domain.to_ascii_lowercase().as_str() {
            "gmail" | "googlemail" => format!(" (did you mean {}.com?)", mailbox.email),
            _ => String::new(),
        };
        return Err(ConfigError::invalid(format!(
            "{key}: {:?} has no top-level domain after the @{hint}; write the whole address, e.g. you@gmail.com",
            mailbox.email.to_string()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Env;

    fn settings(yaml: &str, env: Env<String, String>) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        let cfg = crate::config::load_from(Some(&p), Some(env))?;
        Settings::from_config(&cfg, &cfg.resolved_cameras())
    }

    fn to(s: &Settings, camera: &str) -> Vec<String> {
        s.composer(camera)
            .to_mailboxes()
            .iter()
            .map(|m| m.email.to_string())
            .collect()
    }

    #[test]
    fn camera_recipients_inherit_from_defaults_and_smtp() {
        let s = settings(
            "smtp:\n  username: me@example.com\n  password: abcdefghijklmnop\ndefaults:\n  min_score: 0.6\ncameras:\n  door:\n    to: [a@example.com]\n  yard: {}\n",
            Env::new(),
        )
        .unwrap();
        assert_eq!(to(&s, "door"), vec!["a@example.com".to_string()]);
        assert_eq!(to(&s, "yard"), vec!["me@example.com".to_string()]);
        assert_eq!(to(&s, "street"), vec!["me@example.com".to_string()]);
    }

    #[test]
    fn multi_camera_example_recipients() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/multi-camera.yaml");
        let env = Env::from([
            ("SNAPMAIL__SMTP__PASSWORD_FILE".to_string(), String::new()),
            (
                "SNAPMAIL__SMTP__PASSWORD".to_string(),
                "abcd efgh ijkl mnop".to_string(),
            ),
        ]);
        let cfg = crate::config::load_from(Some(&path), Some(env)).unwrap();
        let s = Settings::from_config(&cfg, &cfg.resolved_cameras()).unwrap();
        assert_eq!(to(&s, "front_door").len(), 2);
    }

    #[test]
    fn times_and_links_come_from_the_configuration() {
        let s = settings("timezone: Asia/Tokyo\n", Env::new()).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_731_254_400);
        assert_eq!(s.composer("any").local_time(t), "2024-11-11 01:00:00 JST");
        let e = settings("timezone: Mars/Olympus\n", Env::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("timezone"), "{e}");
        let e = settings("frigate:\n  public_url: frigate.example.com\n", Env::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("frigate.public_url") && e.contains("https://"),
            "{e}"
        );
        settings(
            "frigate:\n  public_url: https://frigate.example.com/\n",
            Env::new(),
        )
        .unwrap();
    }

    #[test]
    fn bad_mailboxes_name_their_key() {
        let e = settings(
            "smtp:\n  host: localhost\n  username: a@b.c\n  password: hunter2secret\n  from: not an address\n",
            Env::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("smtp.from"), "{e}");
        assert!(!e.contains("hunter2secret"), "{e}");
        let e = settings("cameras:\n  door:\n    to: [nobody]\n", Env::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cameras.door.to"), "{e}");
        let e = settings(
            "smtp:\n  username: a@b.c\n  password: abcdefghijklmnop\n  to: [you@gmail]\n",
            Env::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("smtp.to") && e.contains("did you mean you@gmail.com?"),
            "{e}"
        );
        // A local relay's mailbox is fine.
        settings(
            "smtp:\n  host: localhost\n  username: root@localhost\n  password: x\n",
            Env::new(),
        )
        .unwrap();
    }
}
