//! Outbox: where composed mail goes, and the only way out to the SMTP server.
//!
//! [`Outbox::submit`] writes the message durably to the [`spool`] first; the [`delivery`]
//! loop then sends it and deletes it only after the server's 250. In preview mode (no
//! `smtp` section) messages are written as `.eml` files instead ([`preview`]).

pub mod delivery;
pub mod preview;
pub mod spool;
pub mod stats;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::mail::Mail;
use preview::PreviewDir;
use spool::{Meta, Spool, SpoolError};
use stats::Stats;

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
    Preview(PreviewDir),
}

/// The durable outbox in front of the delivery loop.
#[derive(Clone)]
pub struct SpoolOutbox {
    pub spool: Spool,
    pub stats: Arc<Stats>,
    notify: mpsc::Sender<String>,
    max_messages: usize,
    max_bytes: u64,
}

impl SpoolOutbox {
    /// Open the spool; `notify` tells the delivery loop about new messages.
    pub fn open(
        config: &crate::config::OutboxConfig,
        stats: Arc<Stats>,
        notify: mpsc::Sender<String>,
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
        })
    }
}

impl Outbox {
    /// Accept a finished mail: durably queued (or previewed) when this returns `Ok`.
    pub async fn submit(&self, mail: Mail) -> Result<(), OutboxError> {
        let bytes = mail.message.formatted();
        match self {
            Outbox::Preview(dir) => {
                let dir = dir.clone();
                let id = mail.message_id.clone();
                let path = tokio::task::spawn_blocking(move || dir.write(&id, &bytes))
                    .await
                    .map_err(|e| OutboxError::Task(e.to_string()))??;
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
                let put = tokio::task::spawn_blocking(move || {
                    spool
                        .put(&meta, &bytes, max_messages, max_bytes)
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
                let id = put.inspect_err(|_| Stats::bump(&o.stats.refused))?;
                o.stats.depth_add(1);
                Stats::bump(&o.stats.queued);
                if o.notify.send(id).await.is_err() {
                    error!("outbox: the delivery loop has stopped; the message stays in the spool for the next start");
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
        let message_id = format!(
            "<{}.{n:016x}@snapmail>",
            1_700_000_000_000u64 + u64::from(n)
        );
        let message = lettre::Message::builder()
            .from("cam@example.com".parse().unwrap())
            .to("me@example.com".parse().unwrap())
            .subject(format!("mail {n}"))
            .message_id(Some(message_id.clone()))
            .body(String::from("x"))
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
        let stats = Arc::new(Stats::default());
        let (tx, mut rx) = mpsc::channel(8);
        let outbox = Outbox::Spool(SpoolOutbox::open(&config, stats.clone(), tx).unwrap());
        outbox.submit(mail(1)).await.unwrap();
        outbox.submit(mail(2)).await.unwrap();
        let err = outbox.submit(mail(3)).await.unwrap_err();
        assert!(err.to_string().contains("outbox.max_messages=2"), "{err}");
        assert_eq!(Stats::get(&stats.refused), 1);
        assert_eq!(Stats::get(&stats.queued), 2);
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
        let outbox =
            Outbox::Spool(SpoolOutbox::open(&config, Arc::new(Stats::default()), tx).unwrap());
        assert!(outbox
            .submit(mail(4))
            .await
            .unwrap_err()
            .to_string()
            .contains("outbox.max_bytes=10"));
    }
}
