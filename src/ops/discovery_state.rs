//! What Home Assistant discovery keeps across restarts, in a file beside the policy state
//! file (`state.json` → `state.homeassistant.json`): the mail counters its sensors show,
//! and the device and components announced last time, so that a camera dropped from the
//! configuration can be removed from Home Assistant.
//!
//! The counters are advanced from the process-lifetime counters (which start at zero on
//! every start) by their growth since the last reading, so a restart neither loses nor
//! doubles a count. The daily ones start again at local midnight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::state_file::StateFileError;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryState {
    #[serde(default)]
    pub counters: Counters,
    /// The last device message published (`None`: never, or by a version that kept none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<Announced>,
}

/// A device message as published: where, under which topic prefix, with which components.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    /// `homeassistant/device/<id>/config`.
    pub topic: String,
    /// snapmail's topic prefix then (availability and stats live under it).
    pub base: String,
    /// Component key → platform (`switch`, `sensor`, …).
    pub components: BTreeMap<String, String>,
}

/// The numbers behind the Home Assistant sensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// The local day `sent_today` and `suppressed_today` count (`YYYY-MM-DD`).
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub sent_today: u64,
    #[serde(default)]
    pub suppressed_today: u64,
    /// Mails moved to `dead/`, ever.
    #[serde(default)]
    pub failed: u64,
    /// Unix seconds of the last mail out (0: none yet).
    #[serde(default)]
    pub last_mail: u64,
}

/// One reading of the process-lifetime counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    pub sent: u64,
    pub suppressed: u64,
    pub dead: u64,
    pub last_sent: u64,
}

impl Counters {
    /// Move to `today` (clearing the daily counts on a new day) and add what grew between
    /// `before` and `now`.
    pub fn advance(&mut self, today: Date, before: Reading, now: Reading) {
        let day = today.to_string();
        if self.day != day {
            self.day = day;
            self.sent_today = 0;
            self.suppressed_today = 0;
        }
        self.sent_today += now.sent.saturating_sub(before.sent);
        self.suppressed_today += now.suppressed.saturating_sub(before.suppressed);
        self.failed += now.dead.saturating_sub(before.dead);
        self.last_mail = self.last_mail.max(now.last_sent);
    }
}

/// The file beside `state_file`.
pub fn path_beside(state_file: &Path) -> PathBuf {
    state_file.with_extension("homeassistant.json")
}

/// Read the file; a missing one is a first start.
pub async fn load(path: &Path) -> Result<DiscoveryState, String> {
    match crate::state_file::load(path).await {
        Ok(state) => Ok(state.unwrap_or_default()),
        Err(e @ StateFileError::Parse { .. }) => Err(format!(
            "homeassistant: {e}; the mail counters start at zero (delete the file to silence this)"
        )),
        Err(e) => Err(format!(
            "homeassistant: {e}; the mail counters start at zero"
        )),
    }
}

/// Write the file atomically.
pub async fn save(path: &Path, state: &DiscoveryState) -> Result<(), String> {
    crate::state_file::save(path, state).await.map_err(|e| {
        format!(
            "homeassistant: {e}; the mail counters will not survive a restart — fix the directory's permissions or set control.state_file"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn counts_survive_a_restart_and_days_start_at_zero() {
        let mut c = Counters::default();
        let zero = Reading::default();
        let r1 = Reading {
            sent: 3,
            suppressed: 2,
            dead: 1,
            last_sent: 1_700_000_000,
        };
        c.advance(day("2026-11-23"), zero, r1);
        assert_eq!((c.sent_today, c.suppressed_today, c.failed), (3, 2, 1));

        // A restart: the process counters start at zero again; the saved counts go on.
        let mut restored: Counters =
            serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        let r2 = Reading {
            sent: 1,
            suppressed: 0,
            dead: 0,
            last_sent: 1_700_000_100,
        };
        restored.advance(day("2026-11-23"), zero, r2);
        assert_eq!(
            (
                restored.sent_today,
                restored.suppressed_today,
                restored.failed
            ),
            (4, 2, 1)
        );
        assert_eq!(restored.last_mail, 1_700_000_100);

        // Local midnight: the daily counts start again; failed and last_mail stay.
        restored.advance(day("2026-11-24"), r2, r2);
        assert_eq!((restored.sent_today, restored.suppressed_today), (0, 0));
        assert_eq!((restored.failed, restored.last_mail), (1, 1_700_000_100));
        assert_eq!(restored.day, "2026-11-24");

        // An older last_sent (a restart before any mail) never moves last_mail back.
        restored.advance(day("2026-11-24"), zero, zero);
        assert_eq!(restored.last_mail, 1_700_000_100);
    }

    #[test]
    fn the_file_sits_beside_the_state_file() {
        assert_eq!(
            path_beside(Path::new("/data/state.json")),
            Path::new("/data/state.homeassistant.json")
        );
        assert_eq!(
            path_beside(Path::new("snapmail-state")),
            Path::new("snapmail-state.homeassistant.json")
        );
    }

    #[tokio::test]
    async fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.homeassistant.json");
        assert_eq!(load(&path).await.unwrap(), DiscoveryState::default());
        let mut s = DiscoveryState::default();
        s.counters.sent_today = 7;
        s.announced = Some(Announced {
            topic: "homeassistant/device/snapmail/config".into(),
            base: "snapmail".into(),
            components: [("snapmail_a_notifications".to_string(), "switch".to_string())]
                .into_iter()
                .collect(),
        });
        save(&path, &s).await.unwrap();
        assert_eq!(load(&path).await.unwrap(), s);
        std::fs::write(&path, b"not json").unwrap();
        let e = load(&path).await.unwrap_err();
        assert!(e.contains("delete the file"), "{e}");
    }
}
