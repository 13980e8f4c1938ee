//! Per-camera cooldown: at most one mail per camera per cooldown period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Cooldown {
    default: Duration,
    per_camera: HashMap<String, Duration>,
    last_mail: HashMap<String, Instant>,
}

impl Cooldown {
    pub fn new(default: Duration, per_camera: HashMap<String, Duration>) -> Self {
        Cooldown {
            default,
            per_camera,
            last_mail: HashMap::new(),
        }
    }

    fn period(&self, camera: &str) -> Duration {
        self.per_camera.get(camera).copied().unwrap_or(self.default)
    }

    /// Take the camera's slot at `now`, or say how long until it frees up.
    pub fn try_take(&mut self, camera: &str, now: Instant) -> Result<(), Duration> {
        let period = self.period(camera);
        if let Some(last) = self.last_mail.get(camera) {
            let ready_at = *last + period;
            if now < ready_at {
                return Err(ready_at - now);
            }
        }
        self.last_mail.insert(camera.to_owned(), now);
        Ok(())
    }
}
