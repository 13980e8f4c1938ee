//! "Have we decided on this id already?" — a time- and size-bounded set of seen ids.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Dedup {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Dedup {
            ttl,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time `id` is offered (within the ttl); records it.
    pub fn first_time(&mut self, id: &str, now: Instant) -> bool {
        if self.seen(id, now) {
            return false;
        }
        self.remember(id, now);
        true
    }

    /// Whether `id` was remembered within the ttl (does not record it).
    pub fn seen(&mut self, id: &str, now: Instant) -> bool {
        self.expire(now);
        self.seen.contains_key(id)
    }

    /// Record `id` as decided at `now`.
    pub fn remember(&mut self, id: &str, now: Instant) {
        self.expire(now);
        if self.seen.contains_key(id) {
            return;
        }
        if self.seen.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_ttl_and_capacity() {
        let mut d = Dedup::new(Duration::from_secs(10), 2);
        let t = Instant::now();
        assert!(d.first_time("a", t));
        assert!(!d.first_time("a", t + Duration::from_secs(9)));
        assert!(d.first_time("a", t + Duration::from_secs(10)));
        assert!(d.first_time("b", t + Duration::from_secs(10)));
        assert!(d.first_time("c", t + Duration::from_secs(10)));
        // capacity 2: "a" was evicted.
        assert!(d.first_time("a", t + Duration::from_secs(11)));
    }
}
