//! Outbox: where composed mail goes, and the only way out to the SMTP server.
//!
//! [`Outbox::submit`] writes the message to the [`spool`] first; the [`delivery`] loop then
//! sends it and deletes it only after the server's 250. The first attempt gets the message
//! from memory and starts while the spool directory is being synced. In preview mode (no
//! `smtp` section) messages are written as `.eml` files instead ([`preview`]); each file
//! counts as a sent mail in [`OutboxStats`].

mod delivery;
mod preview;
mod settings;
mod spool;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{error, info, warn};

use crate::mail::{Mail, Mailer};
use crate::metrics::OutboxStats;
use preview::PreviewDir;
pub use settings::Settings;
use spool::{Entry, Meta, Spool, SpoolError};

/// Why a message was not accepted into the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox is full ({depth} messages, {bytes} bytes; limits outbox.max_messages={max_messages}, outbox.max_bytes={max_bytes}); this mail is dropped — check why mail is not going out (log above), or raise the limits")]
    Full {
        depth: u64,
        bytes: u64,
        max_messages: usize,
        max_bytes: u64,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("outbox task failed: {0}")]
    Task(String),
}

/// A place to hand finished mail to.
#[derive(Clone)]
pub enum Outbox {
    Spool(SpoolOutbox),
    /// Preview files, and the counters a written file counts in as a sent mail.
    Preview(PreviewDir, Arc<OutboxStats>),
}

/// The durable outbox in front of the delivery loop.
#[derive(Clone)]
pub struct SpoolOutbox {
    pub spool: Spool,
    pub stats: Arc<OutboxStats>,
    notify: mpsc::Sender<Queued>,
    max_messages: usize,
    max_bytes: u64,
    /// Kilobytes of just-spooled messages the delivery loop may hold in memory.
    in_memory: Arc<Semaphore>,
}

/// How much just-spooled mail may wait in memory for its first attempt. Beyond that (the
/// server is slow or unreachable and mail piles up) the first attempt reads the spool file,
/// as every retry does.
const IN_MEMORY_KB: usize = 8 * 1024;

/// A message that has just entered the spool, announced to the delivery loop.
pub struct Queued {
    pub id: String,
    /// The message itself, so the first attempt need not read it back from disk.
    pub fresh: Option<Fresh>,
}

/// A spooled message kept in memory for its first attempt, holding its share of
/// [`IN_MEMORY_KB`] until dropped.
pub struct Fresh {
    pub entry: Entry,
    _share: OwnedSemaphorePermit,
}

impl SpoolOutbox {
    /// Open the spool; `notify` tells the delivery loop about new messages.
    pub fn open(
        config: &crate::config::OutboxConfig,
        stats: Arc<OutboxStats>,
        notify: mpsc::Sender<Queued>,
    ) -> Result<SpoolOutbox, SpoolError> {
        let spool = Spool::open(&config.dir)?;
        let (n, _) = spool.usage();
        stats.depth_add(n as u64);
        Ok(SpoolOutbox {
            spool,
            stats,
            notify,
            max_messages: config.max_messages,
            max_bytes: config.max_bytes,
            in_memory: Arc::new(Semaphore::new(IN_MEMORY_KB)),
        })
    }

    /// The message as a [`Fresh`] entry, if the in-memory allowance has room for it.
    fn fresh(&self, meta: Meta, bytes: Vec<u8>) -> Option<Fresh> {
        let kb = u32::try_from(bytes.len().div_ceil(1024)).ok()?;
        let share = self.in_memory.clone().try_acquire_many_owned(kb).ok()?;
        Some(Fresh {
            entry: Entry { meta, bytes },
            _share: share,
        })
    }
}

/// Why the outbox could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] crate::mail::transport::TransportError),
}

/// The delivery loop of an opened spool, ready to run.
pub struct Delivery {
    spool: Spool,
    mailer: Mailer,
    settings: delivery::DeliverySettings,
    notified: mpsc::Receiver<Queued>,
}

impl Delivery {
    /// Opens sessions ahead of the mails this loop will send.
    pub fn warmer(&self) -> crate::mail::Warmer {
        self.mailer.warmer()
    }

    /// Send until `shutdown` flips (see [`delivery::run`]).
    pub async fn run(self, stats: Arc<OutboxStats>, shutdown: watch::Receiver<bool>) {
        delivery::run(
            self.spool,
            self.mailer,
            self.settings,
            stats,
            self.notified,
            shutdown,
        )
        .await
    }
}

/// Open the outbox `settings` describe: the spool and its delivery loop, or the preview
/// directory (no delivery loop).
pub fn open(
    settings: Settings,
    stats: Arc<OutboxStats>,
) -> Result<(Outbox, Option<Delivery>), OpenError> {
    match settings {
        Settings::Spool(s) => {
            let settings::SpoolSettings {
                spool,
                delivery,
                smtp,
                tls,
            } = *s;
            let mailer = Mailer::with_tls(&smtp, tls)?;
            let (notify, notified) = mpsc::channel(NOTIFY_QUEUE);
            let outbox = SpoolOutbox::open(&spool, stats, notify)?;
            info!(
                server = %format!("{}:{}", smtp.host, smtp.port.0), security = smtp.security().name(),
                user = %smtp.username, spool = %spool.dir.display(),
                "smtp: mail goes out through {}", smtp.host
            );
            let delivery = Delivery {
                spool: outbox.spool.clone(),
                mailer,
                settings: delivery,
                notified,
            };
            Ok((Outbox::Spool(outbox), Some(delivery)))
        }
        Settings::Preview { dir } => {
            let preview = PreviewDir::open(&dir)?;
            info!(
                "no smtp section configured: preview mode, mails are written as .eml files to {}",
                dir.display()
            );
            Ok((Outbox::Preview(preview, stats), None))
        }
    }
}

/// New messages announced to the delivery loop that it has not picked up yet.
const NOTIFY_QUEUE: usize = 64;

impl Outbox {
    /// Accept a finished mail: durably queued (or previewed) when this returns `Ok`.
    pub async fn submit(&self, mail: Mail) -> Result<(), OutboxError> {
        let bytes = mail.message.formatted();
        match self {
            Outbox::Preview(dir, stats) => {
                let dir = dir.clone();
                let id = mail.message_id.clone();
                let path = tokio::task::spawn_blocking(move || dir.write(&id, &bytes))
                    .await
                    .map_err(|e| OutboxError::Task(e.to_string()))??;
                stats.record_sent();
                info!(path = %path.display(), "preview: mail written (no smtp section configured)");
                Ok(())
            }
            Outbox::Spool(o) => {
                // The envelope follows the message's own From/To headers, so per-camera
                // recipients need nothing special here.
                let envelope = mail.message.envelope();
                let meta = Meta {
                    from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
                    to: envelope.to().iter().map(|a| a.to_string()).collect(),
                    created: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    message_id: mail.message_id.clone(),
                };
                let spool = o.spool.clone();
                let (max_messages, max_bytes) = (o.max_messages, o.max_bytes);
                let placed = tokio::task::spawn_blocking(move || {
                    spool
                        .place(&meta, &bytes, max_messages, max_bytes)
                        .map(|id| (id, meta, bytes))
                        .map_err(|e| match e {
                            SpoolError::Full { depth, bytes } => OutboxError::Full {
                                depth: depth as u64,
                                bytes,
                                max_messages,
                                max_bytes,
                            },
                            other => other.into(),
                        })
                })
                .await
                .map_err(|e| OutboxError::Task(e.to_string()))?;
                let (id, meta, bytes) =
                    placed.inspect_err(|_| OutboxStats::bump(&o.stats.refused))?;
                o.stats.depth_add(1);
                OutboxStats::bump(&o.stats.queued);
                // The file is complete and fsynced under its name: the first attempt can
                // start now, while the directory is synced, and the send and the fsync take
                // the time of the longer one instead of both.
                let fresh = o.fresh(meta, bytes);
                if o.notify.send(Queued { id, fresh }).await.is_err() {
                    error!("outbox: the delivery loop has stopped; the message stays in the spool for the next start");
                }
                let spool = o.spool.clone();
                match tokio::task::spawn_blocking(move || spool.sync()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!("outbox: the mail is queued and goes out, but {e}; until it is sent, a power cut could lose it"),
                    Err(e) => warn!("outbox: syncing the spool directory failed: {e}"),
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutboxConfig;

    fn mail(n: u32) -> Mail {
        mail_with(n, String::from("x"))
    }

    fn mail_with(n: u32, body: String) -> Mail {
        let message_id = format!(
            "<{}.{n:016x}@snapmail>",
            1_700_000_000_000u64 + u64::from(n)
        );
        let message = lettre::Message::builder()
            .from("cam@example.com".parse().unwrap())
            .to("me@example.com".parse().unwrap())
            .subject(format!("mail {n}"))
            .message_id(Some(message_id.clone()))
            .body(body)
            .unwrap();
        Mail {
            message_id,
            message,
        }
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_new_mail_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let config = OutboxConfig {
            dir: dir.path().to_owned(),
            max_messages: 2,
            ..OutboxConfig::default()
        };
        let stats = Arc::new(OutboxStats::default());
        let (tx, mut rx) = mpsc::channel(8);
        let outbox = Outbox::Spool(SpoolOutbox::open(&config, stats.clone(), tx).unwrap());
        outbox.submit(mail(1)).await.unwrap();
        outbox.submit(mail(2)).await.unwrap();
        let err = outbox.submit(mail(3)).await.unwrap_err();
        assert!(err.to_string().contains("outbox.max_messages=2"), "{err}");
        assert_eq!(OutboxStats::get(&stats.refused), 1);
        assert_eq!(OutboxStats::get(&stats.queued), 2);
        let Outbox::Spool(o) = &outbox else {
            unreachable!()
        };
        assert_eq!(
            o.spool.list().unwrap().len(),
            2,
            "nothing queued was deleted"
        );
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());

        // The byte bound works the same way.
        let dir = tempfile::tempdir().unwrap();
        let config = OutboxConfig {
            dir: dir.path().to_owned(),
            max_bytes: 10,
            ..OutboxConfig::default()
        };
        let (tx, _rx) = mpsc::channel(8);
        let outbox = Outbox::Spool(
            SpoolOutbox::open(&config, Arc::new(OutboxStats::default()), tx).unwrap(),
        );
        assert!(outbox
            .submit(mail(4))
            .await
            .unwrap_err()
            .to_string()
            .contains("outbox.max_bytes=10"));
    }

    #[tokio::test]
    async fn the_first_attempt_takes_the_message_from_memory_within_an_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let config = OutboxConfig {
            dir: dir.path().to_owned(),
            ..OutboxConfig::default()
        };
        let (tx, mut rx) = mpsc::channel(64);
        let outbox = Outbox::Spool(
            SpoolOutbox::open(&config, Arc::new(OutboxStats::default()), tx).unwrap(),
        );
        let Outbox::Spool(o) = &outbox else {
            unreachable!()
        };
        outbox.submit(mail(1)).await.unwrap();
        let first = rx.try_recv().unwrap();
        let fresh = first
            .fresh
            .as_ref()
            .expect("a small mail is kept in memory");
        let spooled = o.spool.load(&first.id).unwrap();
        assert_eq!(
            fresh.entry.bytes, spooled.bytes,
            "memory and spool hold the same message"
        );
        assert_eq!(fresh.entry.meta, spooled.meta);

        // Mail held in memory uses up the allowance; past it, the first attempt reads the
        // spool like every retry does. Of nine 1 MB mails, seven fit beside the first one.
        let line = "x".repeat(1022) + "\r\n";
        let mut held = vec![first];
        for n in 2..=10 {
            outbox
                .submit(mail_with(n, line.repeat(1024)))
                .await
                .unwrap();
            held.push(rx.try_recv().unwrap());
        }
        let kept: Vec<bool> = held.iter().map(|q| q.fresh.is_some()).collect();
        assert_eq!(
            kept,
            [true, true, true, true, true, true, true, true, false, false]
        );
        // Dropping what was held gives the allowance back.
        held.truncate(1);
        outbox
            .submit(mail_with(11, line.repeat(1024)))
            .await
            .unwrap();
        assert!(rx.try_recv().unwrap().fresh.is_some());
    }
}
