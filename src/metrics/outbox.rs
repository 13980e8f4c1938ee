//! Delivery counters: the outbox counts into them, `/metrics` and Home Assistant read them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Messages accepted into the spool.
    pub queued: AtomicU64,
    /// Messages the server accepted (250 after DATA).
    pub sent: AtomicU64,
    /// Send attempts that failed temporarily and will be retried.
    pub retried: AtomicU64,
    /// Messages moved to `dead/`.
    pub dead: AtomicU64,
    /// New messages refused because the spool was full or not writable.
    pub refused: AtomicU64,
    /// Times sending paused for the daily quota.
    pub paused_quota: AtomicU64,
    /// Times sending paused for bad credentials.
    pub paused_credentials: AtomicU64,
    /// Unix seconds of the oldest waiting message (0: none).
    pub oldest_created: AtomicU64,
    /// Messages waiting in the spool now.
    pub depth: AtomicU64,
    /// Unix seconds of the last delivered mail (0: none yet).
    pub last_sent: AtomicU64,
}

impl OutboxStats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn depth_add(&self, n: u64) {
        self.depth.fetch_add(n, Ordering::Relaxed);
    }

    pub fn depth_sub(&self, n: u64) {
        // Never wrap below zero if a count was off (e.g. a file removed by hand).
        let mut d = self.depth.load(Ordering::Relaxed);
        while let Err(now) = self.depth.compare_exchange_weak(
            d,
            d.saturating_sub(n),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            d = now;
        }
    }

    /// One mail out: accepted by the server, or written as a preview file (which is what
    /// a preview run "sends", so Home Assistant's counters show it).
    pub fn record_sent(&self) {
        Self::bump(&self.sent);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_sent.store(now, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
