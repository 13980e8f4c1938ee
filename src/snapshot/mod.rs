//! Snapshot: fetch the picture an event names, and turn it into a small JPEG.
//!
//! A missing or broken picture never stops the mail: the [`Notification`] then carries the
//! reason, and the mail says why there is no image.

mod camera;
mod excerpt;
pub mod fetch;
mod frigate_api;
pub mod http;
pub mod image;
pub mod jpeg;
mod pixels;
pub mod pool;
pub mod scratch;
mod settings;

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tracing::warn;

use crate::event::Event;
use fetch::Fetcher;
use image::{ResizeSpec, Thumbnail};
use pool::ImagePool;
pub use settings::Settings;

/// An event with its picture (or the reason it has none): the mail stage's input.
#[derive(Debug)]
pub struct Notification {
    pub event: Event,
    pub picture: Result<Thumbnail, PictureError>,
}

/// Why a mail has no picture; the mail says so in these words.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error(transparent)]
    Fetch(#[from] http::FetchError),
    #[error(transparent)]
    Image(#[from] pixels::ImageError),
    #[error("the picture cannot be made smaller than {size} bytes (budget {budget})")]
    CannotShrink { size: usize, budget: usize },
    #[error("the picture was too large to mail ({0})")]
    TooLargeToMail(Box<PictureError>),
}

/// Everything the stage needs to turn an event into a notification.
#[derive(Clone)]
pub struct Snapshotter {
    fetcher: Fetcher,
    pool: ImagePool,
    settings: Arc<Settings>,
}

impl Snapshotter {
    pub fn new(settings: Settings) -> Result<Snapshotter, reqwest::Error> {
        let pool = ImagePool::new(settings.workers, settings.queue);
        // Two bodies per worker: one being worked on, one downloaded and ready.
        let slots = Arc::new(Semaphore::new(pool.workers() * 2));
        Ok(Snapshotter {
            fetcher: Fetcher::new(&settings, slots)?,
            pool,
            settings: Arc::new(settings),
        })
    }

    /// Fetch and shrink the picture for `event`, to its camera's size.
    pub async fn picture(&self, event: &Event) -> Result<Thumbnail, PictureError> {
        let (w, h) = self.settings.size_for(&event.camera);
        self.picture_sized(event, w, h).await
    }

    /// Fetch the picture for `event` and fit it inside `max_width`×`max_height`.
    pub async fn picture_sized(
        &self,
        event: &Event,
        max_width: u32,
        max_height: u32,
    ) -> Result<Thumbnail, PictureError> {
        let spec = ResizeSpec {
            max_width,
            max_height,
            ..self.settings.spec.clone()
        };
        let started = std::time::Instant::now();
        let bytes = self.fetcher.fetch(&event.snapshot).await?;
        crate::metrics::metrics().fetch_took(started.elapsed());
        let started = std::time::Instant::now();
        let picture = self
            .pool
            .thumbnail(bytes, spec, self.settings.limits.clone())
            .await
            .map_err(PictureError::from);
        crate::metrics::metrics().resize_took(started.elapsed());
        picture
    }
}

impl Snapshotter {
    /// Re-encode an already prepared picture so the JPEG is at most `max_bytes`.
    pub async fn shrink(
        &self,
        picture: &Thumbnail,
        max_bytes: usize,
    ) -> Result<Thumbnail, PictureError> {
        let spec = ResizeSpec {
            max_width: picture.width,
            max_height: picture.height,
            max_image_bytes: Some(max_bytes),
            ..self.settings.spec.clone()
        };
        let shrunk = self
            .pool
            .thumbnail(
                picture.jpeg.clone().into(),
                spec,
                self.settings.limits.clone(),
            )
            .await?;
        if shrunk.jpeg.len() > max_bytes {
            return Err(PictureError::CannotShrink {
                size: shrunk.jpeg.len(),
                budget: max_bytes,
            });
        }
        Ok(Thumbnail {
            source_width: picture.source_width,
            source_height: picture.source_height,
            source_format: picture.source_format,
            ..shrunk
        })
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
