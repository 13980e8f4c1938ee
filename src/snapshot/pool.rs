//! A bounded pool for image work, so a motion storm queues instead of decoding twenty 4K
//! frames at once and exhausting memory. Work runs on tokio's blocking threads, at most
//! `workers` at a time.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::image::{self, ImageError, Limits, ResizeSpec, Thumbnail};

#[derive(Clone)]
pub struct ImagePool {
    permits: Arc<Semaphore>,
}

impl ImagePool {
    /// `workers == 0` means one per available core.
    pub fn new(workers: usize) -> ImagePool {
        let n = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            workers
        };
        ImagePool {
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    /// Run [`image::thumbnail`] off the async runtime.
    pub async fn thumbnail(
        &self,
        input: Vec<u8>,
        spec: ResizeSpec,
        limits: Limits,
    ) -> Result<Thumbnail, ImageError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        tokio::task::spawn_blocking(move || image::thumbnail(&input, &spec, &limits))
            .await
            .unwrap_or_else(|e| Err(ImageError::Decode(format!("image worker failed: {e}"))))
    }
}
