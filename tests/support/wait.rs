//! Condition polling with deadlines, instead of fixed sleeps.
#![allow(dead_code)]

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// Polls `f` about every 20 ms until it returns true; panics once `timeout` has passed.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Blocking twin of [`wait_until`] for synchronous code.
pub fn wait_until_blocking<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}
