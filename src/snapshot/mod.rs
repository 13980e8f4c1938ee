//! Snapshot: fetch the picture an event names, and turn it into a small JPEG.
//!
//! A missing or broken picture never stops the mail: the [`Notification`] then carries the
//! reason, and the mail says why there is no image.

pub mod fetch;
pub mod image;
pub mod jpeg;
pub mod pool;

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

use crate::config::Config;
use crate::event::Event;
use fetch::Fetcher;
use image::{Limits, ResizeSpec, Thumbnail};
use pool::ImagePool;

/// An event with its picture (or the reason it has none): the mail stage's input.
#[derive(Debug)]
pub struct Notification {
    pub event: Event,
    pub picture: Result<Thumbnail, String>,
}

/// Everything the stage needs to turn an event into a notification.
#[derive(Clone)]
pub struct Snapshotter {
    fetcher: Fetcher,
    pool: ImagePool,
    spec: ResizeSpec,
    limits: Limits,
}

impl Snapshotter {
    pub fn new(config: &Config) -> Result<Snapshotter, reqwest::Error> {
        let s = &config.snapshot;
        Ok(Snapshotter {
            fetcher: Fetcher::new(config)?,
            pool: ImagePool::new(s.workers, s.queue),
            spec: ResizeSpec {
                max_width: s.max_width,
                max_height: s.max_height,
                jpeg_quality: s.jpeg_quality,
                max_image_bytes: Some(s.max_image_bytes),
            },
            limits: Limits {
                max_pixels: s.max_pixels,
                max_bytes: s.max_bytes,
            },
        })
    }

    /// Fetch and shrink the picture for `event`.
    pub async fn picture(&self, event: &Event) -> Result<Thumbnail, String> {
        let bytes = self
            .fetcher
            .fetch(&event.snapshot)
            .await
            .map_err(|e| e.to_string())?;
        self.pool
            .thumbnail(bytes, self.spec.clone(), self.limits.clone())
            .await
            .map_err(|e| e.to_string())
    }
}

/// How many events may be fetched/processed at once; more wait in the channel.
const IN_FLIGHT: usize = 16;

/// Run the snapshot stage: events in, notifications out.
pub async fn run(
    snapshotter: Snapshotter,
    mut rx: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Notification>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(event) = rx.recv().await {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let snap = snapshotter.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let picture = snap.picture(&event).await;
            if let Err(why) = &picture {
                warn!(camera = %event.camera, id = %event.id, "no picture for this mail: {why}");
            }
            let _ = tx.send(Notification { event, picture }).await;
            drop(permit);
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
