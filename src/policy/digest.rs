//! Collecting what the limits suppressed, per camera, into one digest mail:
//! "7 more events on driveway since 21:03 — 5 person, 2 car".
//!
//! Only counts and the first `digest.max_images` events are kept, so a motion storm costs
//! a few counters, not memory per event.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::Timestamp;

use crate::event::Event;

/// Suppressed events of one camera, waiting for the digest.
#[derive(Debug, Clone)]
pub struct Pending {
    /// When the first of them was suppressed (the `digest.max_delay` clock).
    pub first: Instant,
    pub since: Timestamp,
    pub count: usize,
    labels: BTreeMap<String, usize>,
    samples: Vec<Event>,
}

impl Pending {
    pub fn new(first: Instant, since: Timestamp) -> Pending {
        Pending {
            first,
            since,
            count: 0,
            labels: BTreeMap::new(),
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, ev: &Event, max_samples: usize) {
        self.count += 1;
        let label = ev.label.clone().unwrap_or_else(|| "motion".into());
        *self.labels.entry(label).or_default() += 1;
        if self.samples.len() < max_samples {
            self.samples.push(ev.clone());
        }
    }

    /// The finished digest; `since_text` is the local time of the first event (`21:03`).
    pub fn finish(self, camera: &str, since_text: String) -> Digest {
        let mut labels: Vec<(String, usize)> = self.labels.into_iter().collect();
        // Most frequent first; ties alphabetically (BTreeMap order, stable sort).
        labels.sort_by_key(|l| std::cmp::Reverse(l.1));
        Digest {
            camera: camera.to_owned(),
            count: self.count,
            since: self.since,
            since_text,
            labels,
            samples: self.samples,
        }
    }
}

/// One digest, ready to get its pictures and be composed.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub camera: String,
    pub count: usize,
    pub since: Timestamp,
    pub since_text: String,
    /// `(label, count)`, most frequent first.
    pub labels: Vec<(String, usize)>,
    /// The first events, for pictures (at most `digest.max_images`).
    pub samples: Vec<Event>,
}

impl Digest {
    /// `7 more events on driveway since 21:03 — 5 person, 2 car`
    pub fn headline(&self) -> String {
        let what = if self.count == 1 { "event" } else { "events" };
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(l, n)| format!("{n} {l}"))
            .collect();
        format!(
            "{} more {what} on {} since {} — {}",
            self.count,
            self.camera,
            self.since_text,
            labels.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_labels_and_keeps_the_first_samples() {
        let mut p = Pending::new(Instant::now(), "2026-11-23T20:03:00Z".parse().unwrap());
        for (i, label) in [
            "person", "car", "person", "person", "car", "person", "person",
        ]
        .iter()
        .enumerate()
        {
            let mut e = Event::new("test", i.to_string(), "driveway");
            e.label = Some(label.to_string());
            p.add(&e, 6);
        }
        let d = p.finish("driveway", "21:03".into());
        assert_eq!(d.count, 7);
        assert_eq!(d.samples.len(), 6);
        assert_eq!(d.samples[0].id, "0");
        assert_eq!(
            d.headline(),
            "7 more events on driveway since 21:03 — 5 person, 2 car"
        );
    }
}
