//! The plan: the configuration resolved into each stage's settings, once.
//!
//! `run`, `check`, `doctor` and `test-email` all start from a [`Plan`]. Loading the
//! configuration ([`crate::config`]) checks what the keys themselves say; every check that
//! needs a stage's knowledge (a broker URL, a mailbox, a schedule window a camera names, a
//! Frigate version) happens here, in the `Settings::from_config` of the stage that owns the
//! value, and nowhere else. So a configuration that `check` accepts is one the daemon starts
//! with, and each camera's inherited settings are merged exactly once.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{self, Config, ConfigError, Loaded};
use crate::mqtt::MqttSettings;
use crate::ops::discovery::Discovery;
use crate::{mail, outbox, policy, snapshot};

/// Every stage's settings, checked.
#[derive(Clone)]
pub struct Plan {
    /// The configuration as loaded: logging, the HTTP listener and the sources read it as is.
    pub config: Config,
    pub mqtt: MqttSettings,
    pub policy: policy::Settings,
    pub snapshot: snapshot::Settings,
    pub mail: mail::Settings,
    pub outbox: outbox::Settings,
    /// Home Assistant discovery, when `homeassistant.discovery` is on.
    pub discovery: Option<Discovery>,
}

impl Plan {
    /// The plan for a configuration, or every problem it has.
    pub fn from_config(config: Config) -> Result<Plan, ConfigError> {
        Plan::from_loaded(Loaded {
            config,
            problems: Vec::new(),
        })
    }

    /// The plan for a loaded configuration, or every problem it has: those found while
    /// loading and those each stage finds, all at once.
    pub fn from_loaded(loaded: Loaded) -> Result<Plan, ConfigError> {
        let Loaded {
            config,
            mut problems,
        } = loaded;
        let cameras = config.resolved_cameras();
        let p = &mut problems;
        let policy = keep(p, policy::Settings::from_config(&config, &cameras));
        let mqtt = keep(p, MqttSettings::from_config(&config.mqtt));
        let mail = keep(p, mail::Settings::from_config(&config, &cameras));
        let snapshot = keep(p, snapshot::Settings::from_config(&config, &cameras));
        let outbox = keep(p, outbox::Settings::from_config(&config));
        ConfigError::from_problems(problems)?;
        let (Some(policy), Some(mut mqtt), Some(mail), Some(snapshot), Some(outbox)) =
            (policy, mqtt, mail, snapshot, outbox)
        else {
            unreachable!("a stage without settings has reported its problem")
        };
        let discovery = Discovery::from_config(&config);
        // Home Assistant shows the entities unavailable when the broker delivers this.
        mqtt.last_will = discovery.as_ref().map(Discovery::last_will);
        Ok(Plan {
            outbox,
            config,
            mqtt,
            policy,
            snapshot,
            mail,
            discovery,
        })
    }

    /// Load the configuration from `path` and the process environment, and plan it.
    pub fn load(path: Option<&Path>) -> Result<Plan, ConfigError> {
        Plan::load_from(path, None)
    }

    /// Load from `path` and `env` (`None`: the process environment), and plan it.
    pub fn load_from(
        path: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Plan, ConfigError> {
        Plan::from_loaded(config::load_all(path, env)?)
    }
}

/// The value, or nothing with its problem noted.
fn keep<T>(problems: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| problems.push(e)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn plan(text: &str) -> Result<Plan, ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Plan::load_from(Some(f.path()), Some(HashMap::new()))
    }

    fn error_of(text: &str) -> String {
        plan(text).err().expect("the plan must fail").to_string()
    }

    #[test]
    fn defaults_plan() {
        let p = plan("").unwrap();
        assert!(p.mqtt.embedded.is_some());
        assert!(matches!(p.outbox, outbox::Settings::Preview { .. }));
        assert!(p.discovery.is_none());
    }

    #[test]
    fn stage_checks_name_the_key() {
        let e = error_of("mqtt:\n  url: http://broker:1883\n");
        assert!(
            e.contains("mqtt.url") && e.contains("mqtt://host:1883"),
            "{e}"
        );
        let e = error_of("frigate:\n  version: fourteen\n");
        assert!(e.contains("frigate.version"), "{e}");
        let e = error_of(
            "schedules:\n  night: {from: '22:00', to: '06:00'}\ncameras:\n  yard:\n    active: [nite]\n",
        );
        assert!(e.contains("cameras.yard.active: \"nite\""), "{e}");
    }

    #[test]
    fn secrets_do_not_appear_in_errors() {
        let e = error_of(
            "smtp:\n  username: a@b.c\n  password: hunter2secret\n  from: not an address\n",
        );
        assert!(e.contains("smtp.from"), "{e}");
        assert!(!e.contains("hunter2secret"), "{e}");
    }

    #[test]
    fn a_ca_file_is_read_once_at_planning_and_each_problem_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("relay.crt");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        // What `check` accepts, `run` starts with: a file the transport could not use is
        // refused here, not when the first mail goes out.
        let e = error_of(&format!(
            "smtp:\n  host: relay.lan\n  username: a@b.c\n  password: x\n  ca_file: {}\n",
            not_pem.display()
        ));
        assert!(
            e.contains("smtp.ca_file") && e.contains("holds no certificate"),
            "{e}"
        );
        let e = error_of("mqtt:\n  url: mqtts://broker.lan:8883\n  ca_file: /nonexistent/ca.pem\n");
        assert_eq!(e.matches("mqtt.ca_file").count(), 1, "{e}");
        assert!(e.contains("does not exist; give the path"), "{e}");
    }
}
