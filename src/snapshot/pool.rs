//! A bounded pool for image work, so a motion storm queues instead of decoding twenty 4K
//! frames at once and exhausting memory. Work runs on tokio's blocking threads, at most
//! `workers` at a time (`snapshot.workers`); at most `queue` more jobs wait for a worker
//! (`snapshot.queue`), each holding its encoded input. A job beyond that is refused at once
//! with [`ImageError::Busy`], logged, and counted in [`ImagePool::overflows`].
//! Each running job borrows a set of reusable pixel buffers ([`Scratch`]), so the pool holds
//! at most `workers` sets.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tracing::warn;

use super::image::{self, ImageError, Limits, ResizeSpec, Thumbnail};
use super::scratch::Scratch;

#[derive(Clone)]
pub struct ImagePool {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    workers: usize,
    queue: usize,
    /// Jobs admitted and not yet finished (running + waiting).
    admitted: AtomicUsize,
    overflows: AtomicU64,
    /// Buffers of finished jobs, at most one set per worker: a job takes a set when it starts
    /// and puts it back when it ends.
    scratch: Mutex<Vec<Scratch>>,
}

/// Releases a job's admission when its work is done (or abandoned before it started).
struct Admission(Arc<Inner>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ImagePool {
    /// `workers == 0` means one per available core; `queue` jobs may wait beyond those running.
    pub fn new(workers: usize, queue: usize) -> ImagePool {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            workers
        };
        ImagePool {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(workers)),
                workers,
                queue,
                admitted: AtomicUsize::new(0),
                overflows: AtomicU64::new(0),
                scratch: Mutex::new(Vec::new()),
            }),
        }
    }

    /// How many jobs run at once.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// How many jobs were refused because the queue was full, since start.
    pub fn overflows(&self) -> u64 {
        self.inner.overflows.load(Ordering::Relaxed)
    }

    /// Run [`image::thumbnail`] off the async runtime, or refuse at once if the queue is full.
    pub async fn thumbnail(
        &self,
        input: bytes::Bytes,
        spec: ResizeSpec,
        limits: Limits,
    ) -> Result<Thumbnail, ImageError> {
        let inner = &self.inner;
        let capacity = inner.workers + inner.queue;
        let admitted = admit(&inner.admitted, capacity);
        if let Err(busy) = admitted {
            let total = inner.overflows.fetch_add(1, Ordering::Relaxed) + 1;
            let waiting = busy.saturating_sub(inner.workers);
            warn!(
                waiting,
                queue = inner.queue,
                overflows = total,
                "image queue full (snapshot.queue); snapshot dropped"
            );
            return Err(ImageError::Busy {
                waiting,
                queue: inner.queue,
            });
        }
        let admission = Admission(inner.clone());
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        // The permit and admission move into the job, so a caller that stops waiting does not
        // free the slot while the work still runs.
        tokio::task::spawn_blocking(move || {
            let shelf = &admission.0.scratch;
            let mut scratch = shelf
                .lock()
                .ok()
                .and_then(|mut s| s.pop())
                .unwrap_or_default();
            let result = image::thumbnail_with(&input, &spec, &limits, &mut scratch);
            if let Ok(mut s) = shelf.lock() {
                s.push(scratch);
            }
            drop((permit, admission));
            result
        })
        .await
        .unwrap_or_else(|e| Err(ImageError::Worker(e.to_string())))
    }
}

/// One more admitted thumbnail if fewer than `capacity` are; otherwise how many are.
fn admit(admitted: &AtomicUsize, capacity: usize) -> Result<usize, usize> {
    let mut n = admitted.load(Ordering::Acquire);
    loop {
        if n >= capacity {
            return Err(n);
        }
        match admitted.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(prev) => return Ok(prev),
            Err(now) => n = now,
        }
    }
}
