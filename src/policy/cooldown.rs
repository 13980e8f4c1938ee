//! Per-camera cooldown: at most one mail per camera per cooldown period.
//!
//! Checking ([`Cooldown::wait`]) and taking ([`Cooldown::take`]) are separate so that the
//! slot is only used when a mail is really queued, after every other limit agreed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Cooldown {
    last_mail: HashMap<String, Instant>,
}

impl Cooldown {
    /// How long `camera` must still wait at `now` with this `period` (zero: it may mail).
    pub fn wait(&self, camera: &str, period: Duration, now: Instant) -> Duration {
        match self.last_mail.get(camera) {
            Some(last) => (*last + period).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// Record that `camera` mailed at `now`.
    pub fn take(&mut self, camera: &str, now: Instant) {
        self.last_mail.insert(camera.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_period_after_a_mail() {
        let mut c = Cooldown::default();
        let t = Instant::now();
        let p = Duration::from_secs(60);
        assert_eq!(c.wait("a", p, t), Duration::ZERO);
        c.take("a", t);
        assert_eq!(
            c.wait("a", p, t + Duration::from_secs(45)),
            Duration::from_secs(15)
        );
        assert_eq!(c.wait("a", p, t + p), Duration::ZERO);
        assert_eq!(c.wait("b", p, t), Duration::ZERO);
    }
}
