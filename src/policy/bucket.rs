//! Per-camera token buckets (`burst` mails at once, one more per `interval`), built on
//! `governor`'s GCRA limiter.
//!
//! governor reads time from a clock of its own. Here that clock is a manually advanced
//! one, moved forward to the `Instant` each policy decision is given, so the buckets see
//! exactly the same time as the cooldown and the schedules, and tests drive all of them
//! with one injected clock instead of sleeping.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, FakeRelativeClock};
use governor::{Quota, RateLimiter};

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// `burst` tokens, one refilled per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub burst: NonZeroU32,
    pub interval: Duration,
}

impl BucketSpec {
    fn quota(&self) -> Quota {
        Quota::with_period(self.interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }
}

pub struct Buckets {
    clock: FakeRelativeClock,
    /// The `Instant` the clock's zero stands for, and how far it has been advanced.
    epoch: Option<Instant>,
    advanced: Duration,
    limiters: HashMap<String, (BucketSpec, Limiter)>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            clock: FakeRelativeClock::default(),
            epoch: None,
            advanced: Duration::ZERO,
            limiters: HashMap::new(),
        }
    }
}

impl Buckets {
    fn sync(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed = now.saturating_duration_since(epoch);
        // Never backwards: an older reading is treated as "no time passed".
        if elapsed > self.advanced {
            self.clock.advance(elapsed - self.advanced);
            self.advanced = elapsed;
        }
    }

    fn limiter(&mut self, camera: &str, spec: BucketSpec) -> &Limiter {
        let clock = self.clock.clone();
        let entry = self.limiters.entry(camera.to_owned()).or_insert_with(|| {
            (
                spec,
                RateLimiter::direct_with_clock(spec.quota(), clock.clone()),
            )
        });
        if entry.0 != spec {
            *entry = (spec, RateLimiter::direct_with_clock(spec.quota(), clock));
        }
        &entry.1
    }

    /// Spend one of `camera`'s tokens at `now`, or say how long until one is there.
    pub fn try_take(
        &mut self,
        camera: &str,
        spec: BucketSpec,
        now: Instant,
    ) -> Result<(), Duration> {
        self.sync(now);
        let clock = self.clock.clone();
        match self.limiter(camera, spec).check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(clock.now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_token_per_interval() {
        let mut b = Buckets::default();
        let spec = BucketSpec {
            burst: NonZeroU32::new(3).unwrap(),
            interval: Duration::from_secs(600),
        };
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.try_take("door", spec, t), Ok(()));
        }
        assert_eq!(b.try_take("door", spec, t), Err(Duration::from_secs(600)));
        // Other cameras have their own bucket.
        assert_eq!(b.try_take("garage", spec, t), Ok(()));
        let later = t + Duration::from_secs(599);
        assert_eq!(b.try_take("door", spec, later), Err(Duration::from_secs(1)));
        let refill = t + Duration::from_secs(600);
        assert_eq!(b.try_take("door", spec, refill), Ok(()));
        assert!(b.try_take("door", spec, refill).is_err());
        // A long quiet spell refills to `burst`, not beyond.
        let much_later = t + Duration::from_secs(100_000);
        for _ in 0..3 {
            assert_eq!(b.try_take("door", spec, much_later), Ok(()));
        }
        assert!(b.try_take("door", spec, much_later).is_err());
    }
}
