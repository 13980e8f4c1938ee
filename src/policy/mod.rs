//! Policy: decides, for each event, whether it becomes a mail.
//!
//! The decision is a pure function of the event, the configuration and a clock reading
//! (`Instant`), so it is tested without sleeping. The stage task around it only logs one
//! line per decision and forwards what may be mailed.

pub mod cooldown;
pub mod dedup;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::config::Config;
use crate::event::Event;
use cooldown::Cooldown;
use dedup::Dedup;

/// What the policy made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead and mail it.
    Mail,
    /// Already decided for this id (a later `update`/`end`, or a replay).
    Duplicate,
    /// The camera mailed too recently; the next mail may go after `wait`.
    Suppressed { wait: Duration },
}

/// The policy stage's state.
pub struct Policy {
    dedup: Dedup,
    cooldown: Cooldown,
}

impl Policy {
    pub fn new(config: &Config) -> Policy {
        let per_camera = config
            .cameras
            .iter()
            .filter_map(|(name, c)| c.cooldown.map(|d| (name.clone(), d.0)))
            .collect();
        Policy {
            // Frigate events last minutes; a day of ids is plenty and bounded.
            dedup: Dedup::new(Duration::from_secs(24 * 3600), 100_000),
            cooldown: Cooldown::new(config.rate_limit.cooldown.0, per_camera),
        }
    }

    pub fn decide(&mut self, event: &Event, now: Instant) -> Decision {
        if !self.dedup.first_time(&event.id, now) {
            return Decision::Duplicate;
        }
        match self.cooldown.try_take(&event.camera, now) {
            Ok(()) => Decision::Mail,
            Err(wait) => Decision::Suppressed { wait },
        }
    }
}

/// Run the policy stage: events in, events to mail out.
pub async fn run(mut policy: Policy, mut rx: mpsc::Receiver<Event>, tx: mpsc::Sender<Event>) {
    while let Some(event) = rx.recv().await {
        match policy.decide(&event, Instant::now()) {
            Decision::Mail => {
                crate::ops::metrics().decision("mailed", "");
                info!(camera = %event.camera, id = %event.id, source = event.source, "event {}: mailing", event.summary());
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            Decision::Duplicate => {
                crate::ops::metrics().decision("duplicate", "");
                debug!(camera = %event.camera, id = %event.id, "event already handled; nothing to send");
            }
            Decision::Suppressed { wait } => {
                crate::ops::metrics().decision("suppressed", "cooldown");
                info!(
                    camera = %event.camera, id = %event.id,
                    "event {}: suppressed by cooldown; next mail for {} may go in {}",
                    event.summary(), event.camera, humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, camera: &str) -> Event {
        let mut e = Event::new("test", id, camera);
        e.label = Some("person".into());
        e
    }

    #[test]
    fn one_mail_per_id_and_cooldown_per_camera() {
        let mut cfg = Config::default();
        cfg.cameras.insert(
            "driveway".into(),
            crate::config::CameraConfig {
                cooldown: Some(crate::config::HumanDuration::secs(600)),
            },
        );
        let mut p = Policy::new(&cfg);
        let t0 = Instant::now();
        assert_eq!(p.decide(&ev("a", "driveway"), t0), Decision::Mail);
        assert_eq!(p.decide(&ev("a", "driveway"), t0), Decision::Duplicate);
        assert_eq!(
            p.decide(&ev("b", "driveway"), t0 + Duration::from_secs(100)),
            Decision::Suppressed {
                wait: Duration::from_secs(500)
            }
        );
        assert_eq!(p.decide(&ev("c", "garden"), t0), Decision::Mail);
        assert_eq!(
            p.decide(&ev("d", "garden"), t0 + Duration::from_secs(59)),
            Decision::Suppressed {
                wait: Duration::from_secs(1)
            }
        );
        assert_eq!(
            p.decide(&ev("e", "garden"), t0 + Duration::from_secs(60)),
            Decision::Mail
        );
        assert_eq!(
            p.decide(&ev("f", "driveway"), t0 + Duration::from_secs(600)),
            Decision::Mail
        );
    }
}
