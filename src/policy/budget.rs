//! The global daily budget: at most `daily_limit` mails in any rolling 24 hours, because
//! consumer Gmail stops an account for a day at about 500.
//!
//! Send times are wall-clock timestamps so the budget survives a restart (they are kept in
//! the state file). A rolling window needs the exact send times, not a token rate, so this
//! is a small queue of timestamps rather than a rate limiter.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

const WINDOW: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, PartialEq)]
pub struct DailyBudget {
    limit: u32,
    sent: VecDeque<Timestamp>,
}

/// What recording a send crossed, for one loud log line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Normal,
    /// The send reached 80 % of the limit.
    Warning,
    /// The send used the last of the budget.
    Exhausted,
}

impl DailyBudget {
    pub fn new(limit: u32) -> DailyBudget {
        DailyBudget {
            limit,
            sent: VecDeque::new(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn expire(&mut self, now: Timestamp) {
        while self.sent.front().is_some_and(|t| *t + WINDOW <= now) {
            self.sent.pop_front();
        }
    }

    /// Mails sent in the 24 hours before `now`.
    pub fn used(&mut self, now: Timestamp) -> u32 {
        self.expire(now);
        self.sent.len() as u32
    }

    /// `Ok` if one more mail fits at `now`, else when the oldest send leaves the window.
    pub fn check(&mut self, now: Timestamp) -> Result<(), Timestamp> {
        self.expire(now);
        if (self.sent.len() as u32) < self.limit {
            return Ok(());
        }
        Err(self.sent.front().map_or(now, |t| *t + WINDOW))
    }

    /// Count a mail sent at `now`.
    pub fn record(&mut self, now: Timestamp) -> Level {
        self.expire(now);
        self.sent.push_back(now);
        let used = self.sent.len() as u32;
        let warn_at = (self.limit * 4).div_ceil(5);
        if used >= self.limit {
            Level::Exhausted
        } else if used == warn_at {
            Level::Warning
        } else {
            Level::Normal
        }
    }

    /// Send times as Unix seconds, for the state file.
    pub fn export(&self) -> Vec<i64> {
        self.sent.iter().map(|t| t.as_second()).collect()
    }

    /// Restore send times from the state file (older than 24 h ones drop out on use).
    pub fn import(&mut self, secs: &[i64]) {
        let mut v: Vec<Timestamp> = secs
            .iter()
            .filter_map(|s| Timestamp::from_second(*s).ok())
            .collect();
        v.sort();
        self.sent = v.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_at_80_percent_stop_at_100_and_rolling_rollover() {
        let mut b = DailyBudget::new(10);
        let t0: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let minute = SignedDuration::from_mins(1);
        let mut levels = Vec::new();
        for i in 0..10 {
            let now = t0 + minute * i;
            assert_eq!(b.check(now), Ok(()));
            levels.push(b.record(now));
        }
        assert_eq!(levels[7], Level::Warning); // the 8th mail = 80 %
        assert_eq!(levels.iter().filter(|l| **l == Level::Warning).count(), 1);
        assert_eq!(levels[9], Level::Exhausted);
        // Full until the first send is 24 h old.
        let almost = t0 + WINDOW - SignedDuration::from_secs(1);
        assert_eq!(b.check(almost), Err(t0 + WINDOW));
        assert_eq!(b.check(t0 + WINDOW), Ok(()));
        assert_eq!(b.used(t0 + WINDOW), 9);
        // Survives a restart through export/import.
        let mut restored = DailyBudget::new(10);
        restored.import(&b.export());
        assert_eq!(restored.used(t0 + WINDOW), 9);
    }
}
