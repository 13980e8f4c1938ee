//! The mail stage: each notification (and each digest) composed for its camera's
//! recipients and handed to the outbox.
//!
//! A message over `smtp.max_message_bytes` has its picture re-encoded smaller by the image
//! workers before it is queued: only here is the composed size known, and a message the
//! server is certain to refuse must never reach the spool.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::compose::{ComposeError, Composer, Mail};
use super::settings::Settings;
use crate::outbox::Outbox;
use crate::policy::Digest;
use crate::snapshot::{Notification, PictureError, Snapshotter};

/// Why a notification could not become a mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("the message is {size} bytes even without a picture, over smtp.max_message_bytes ({budget})")]
    OverBudget { size: usize, budget: usize },
    #[error("the message could not be brought under smtp.max_message_bytes ({budget})")]
    NoFit { budget: usize },
}

/// Mails being composed and written to the spool at once.
const QUEUE_IN_FLIGHT: usize = 8;

/// Fetch small pictures for each digest's sampled events, compose it, queue it.
pub async fn run_digests(
    settings: Arc<Settings>,
    outbox: Outbox,
    snapshotter: Snapshotter,
    mut rx: mpsc::Receiver<Digest>,
) {
    let image_size = settings.digest_image_size;
    while let Some(d) = rx.recv().await {
        let mut pictures = Vec::with_capacity(d.samples.len());
        for ev in &d.samples {
            pictures.push(snapshotter.picture_sized(ev, image_size, image_size).await);
        }
        let mail = match super::digest::compose(settings.composer(&d.camera), &d, &pictures) {
            Ok(m) => m,
            Err(e) => {
                error!(camera = %d.camera, "digest NOT queued: {e}");
                continue;
            }
        };
        let message_id = mail.message_id.clone();
        match outbox.submit(mail).await {
            Ok(()) => {
                info!(camera = %d.camera, message_id = %message_id, count = d.count, "digest queued")
            }
            Err(e) => error!(camera = %d.camera, "digest NOT queued: {e}"),
        }
    }
}

/// Compose each notification and hand it to the outbox.
pub async fn run(
    settings: Arc<Settings>,
    outbox: Outbox,
    snapshotter: Snapshotter,
    rx: mpsc::Receiver<Notification>,
) {
    let max_message_bytes = settings.max_message_bytes;
    // Queuing a mail waits for its fsyncs; with several in flight the file system commits
    // them together instead of one journal commit per mail.
    let notifications =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    notifications
        .for_each_concurrent(QUEUE_IN_FLIGHT, |mut n| {
            let (settings, outbox, snapshotter) = (&settings, &outbox, &snapshotter);
            async move {
                let composer = settings.composer(&n.event.camera);
                let mail =
                    match fit_to_budget(composer, snapshotter, &mut n, max_message_bytes).await {
                        Ok(m) => m,
                        Err(e) => {
                            error!(camera = %n.event.camera, id = %n.event.id, "mail NOT queued: {e}");
                            return;
                        }
                    };
                let message_id = mail.message_id.clone();
                match outbox.submit(mail).await {
                    Ok(()) => {
                        info!(camera = %n.event.camera, id = %n.event.id, message_id = %message_id, "mail queued")
                    }
                    Err(e) => {
                        error!(camera = %n.event.camera, id = %n.event.id, "mail NOT queued: {e}")
                    }
                }
            }
        })
        .await;
}

/// Compose the mail; if the formatted message is over budget, re-encode the picture
/// smaller until it fits (and, as a last resort, send it without the picture). Never queue
/// a message the server is certain to refuse.
async fn fit_to_budget(
    composer: &Composer,
    snapshotter: &Snapshotter,
    n: &mut Notification,
    budget: usize,
) -> Result<Mail, MailError> {
    for _ in 0..4 {
        let mail = composer.compose(n)?;
        let size = mail.message.formatted().len();
        if size <= budget {
            return Ok(mail);
        }
        let Ok(picture) = &n.picture else {
            return Err(MailError::OverBudget { size, budget });
        };
        // Base64 costs ~4/3 plus line breaks; aim the JPEG at what is left, with a margin.
        let overhead = size.saturating_sub(picture.jpeg.len() * 4 / 3);
        let target = budget.saturating_sub(overhead) * 3 / 4 * 9 / 10;
        warn!(
            camera = %n.event.camera, size, budget,
            "message over smtp.max_message_bytes; re-encoding the picture to at most {target} bytes"
        );
        n.picture = match snapshotter.shrink(picture, target.max(1)).await {
            Ok(smaller) => Ok(smaller),
            Err(why) => Err(PictureError::TooLargeToMail(Box::new(why))),
        };
    }
    Err(MailError::NoFit { budget })
}
