//! The one place where the stages are wired together:
//!
//! ```text
//! sources (MQTT) ──Event──▶ policy ──Event──▶ snapshot ──Notification──▶ mail (compose)
//!                                                                          │ Mail
//!                                                                          ▼
//!                                                  outbox (spool) ──▶ delivery ──▶ SMTP
//! ```
//!
//! Channels between stages are bounded, so a slow SMTP server or a motion storm applies
//! back-pressure instead of growing memory. Shutdown flows the same way: the source stops,
//! each stage drains and closes its output, and the delivery loop lets in-flight sends
//! finish (up to `shutdown_timeout`) while unsent mail stays in the spool.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::event::Event;
use crate::mail::{Composer, Mailer};
use crate::outbox::delivery::{self, DeliverySettings};
use crate::outbox::preview::PreviewDir;
use crate::outbox::stats::Stats;
use crate::outbox::{Outbox, SpoolOutbox};
use crate::policy::{self, Policy};
use crate::snapshot::{self, Notification, Snapshotter};
use crate::sources::mqtt::{self, BrokerAddress, MqttLinks, MqttSettings};
use crate::sources::{self, broker, Outgoing};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Http(#[from] crate::ops::http::HttpError),
    #[error(transparent)]
    Spool(#[from] crate::outbox::spool::SpoolError),
    #[error(transparent)]
    Transport(#[from] crate::mail::transport::TransportError),
    #[error("smtp: {0}")]
    Address(String),
    #[error("snapshot: cannot set up the HTTP client: {0}")]
    HttpClient(String),
}

/// What the running daemon exposes to the binary (and to tests).
pub struct Running {
    pub stats: Arc<Stats>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Wait until every stage has finished (after shutdown was signalled).
    pub async fn join(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                error!("a pipeline task failed: {e}");
            }
        }
    }
}

const EVENT_QUEUE: usize = 256;
const STAGE_QUEUE: usize = 64;

/// Start every stage. They run until `shutdown` is set to `true`.
pub async fn start(config: Config, shutdown: watch::Receiver<bool>) -> Result<Running, StartError> {
    crate::tls::install_crypto_provider();
    let stats = Arc::new(Stats::default());
    let mut tasks = tokio::task::JoinSet::new();
    crate::ops::metrics().watch_outbox(stats.clone());
    if config.http.enabled {
        let listener = crate::ops::http::bind(config.http.listen).await?;
        tasks.spawn(crate::ops::http::serve(listener, shutdown.clone()));
    }

    // Sources.
    let address = match &config.mqtt.url {
        Some(url) => {
            BrokerAddress::parse(url).map_err(|e| StartError::Address(format!("mqtt.url: {e}")))?
        }
        None => {
            broker::start(config.mqtt.listen, config.mqtt.max_packet_bytes)?;
            info!(
                "no mqtt.url configured: running the embedded MQTT broker on {} (publish there, or set mqtt.url to use your broker)",
                config.mqtt.listen
            );
            BrokerAddress {
                host: config.mqtt.listen.ip().to_string(),
                port: config.mqtt.listen.port(),
                tls: false,
            }
        }
    };
    let decoders = sources::decoders(&config);

    // Outbox: SMTP with a durable spool, or preview files.
    let (outbox, delivery_parts) = match &config.smtp {
        Some(smtp) => {
            let mailer = Mailer::new(smtp)?;
            let (notify_tx, notify_rx) = mpsc::channel(STAGE_QUEUE);
            let spool = SpoolOutbox::open(&config.outbox, stats.clone(), notify_tx)?;
            info!(
                server = %format!("{}:{}", smtp.host, smtp.port.0), security = smtp.security().name(),
                user = %smtp.username, spool = %config.outbox.dir.display(),
                "smtp: mail goes out through {}", smtp.host
            );
            let settings = DeliverySettings {
                max_age: config.outbox.max_age.0,
                retry_min: config.outbox.retry_min.0,
                retry_max: config.outbox.retry_max.0,
                quota_pause: config.outbox.quota_pause.0,
                credentials_pause: config.outbox.credentials_pause.0,
                shutdown_timeout: config.shutdown_timeout.0,
                max_in_flight: smtp.max_connections as usize,
            };
            let parts = (spool.spool.clone(), mailer, settings, notify_rx);
            (Outbox::Spool(spool), Some(parts))
        }
        None => {
            let dir = PreviewDir::open(&config.outbox.preview_dir)?;
            info!(
                "no smtp section configured: preview mode, mails are written as .eml files to {}",
                config.outbox.preview_dir.display()
            );
            (Outbox::Preview(dir), None)
        }
    };
    let composer = match &config.smtp {
        Some(smtp) => Composer::new(smtp.from_address(), &smtp.recipients()),
        None => Composer::new(
            "snapmail <snapmail@localhost>",
            &["preview@localhost".to_owned()],
        ),
    }
    .map_err(StartError::Address)?;
    let snapshotter =
        Snapshotter::new(&config).map_err(|e| StartError::HttpClient(e.to_string()))?;

    let (event_tx, event_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (mail_tx, mail_rx) = mpsc::channel::<Event>(STAGE_QUEUE);
    let (note_tx, note_rx) = mpsc::channel::<Notification>(STAGE_QUEUE);

    let settings = MqttSettings {
        address,
        config: config.mqtt.clone(),
        last_will: None,
    };
    // Stages that publish (state, discovery) get a clone of `publish_tx`.
    let (publish_tx, publish_rx) = mpsc::channel::<Outgoing>(STAGE_QUEUE);
    let (connections_tx, _connections_rx) = watch::channel(0u64);
    let links = MqttLinks {
        publish: publish_rx,
        connections: connections_tx,
    };
    tasks.spawn(mqtt::run(
        settings,
        decoders,
        event_tx,
        links,
        shutdown.clone(),
    ));
    drop(publish_tx);
    tasks.spawn(policy::run(Policy::new(&config), event_rx, mail_tx));
    let budget = config
        .smtp
        .as_ref()
        .map_or(usize::MAX, |s| s.max_message_bytes);
    tasks.spawn(snapshot::run(snapshotter.clone(), mail_rx, note_tx));
    tasks.spawn(mail_stage(composer, outbox, snapshotter, budget, note_rx));
    if let Some((spool, mailer, settings, notify_rx)) = delivery_parts {
        tasks.spawn(delivery::run(
            spool,
            mailer,
            settings,
            stats.clone(),
            notify_rx,
            shutdown.clone(),
        ));
    }
    Ok(Running { stats, tasks })
}

/// Compose each notification and hand it to the outbox.
async fn mail_stage(
    composer: Composer,
    outbox: Outbox,
    snapshotter: Snapshotter,
    max_message_bytes: usize,
    mut rx: mpsc::Receiver<Notification>,
) {
    while let Some(mut n) = rx.recv().await {
        let mail = match fit_to_budget(&composer, &snapshotter, &mut n, max_message_bytes).await {
            Ok(m) => m,
            Err(e) => {
                error!(camera = %n.event.camera, id = %n.event.id, "mail NOT queued: {e}");
                continue;
            }
        };
        let message_id = mail.message_id.clone();
        match outbox.submit(mail).await {
            Ok(()) => {
                info!(camera = %n.event.camera, id = %n.event.id, message_id = %message_id, "mail queued")
            }
            Err(e) => warn!(camera = %n.event.camera, id = %n.event.id, "mail NOT queued: {e}"),
        }
    }
}

/// Compose the mail; if the formatted message is over budget, re-encode the picture
/// smaller until it fits (and, as a last resort, send it without the picture). Never queue
/// a message the server is certain to refuse.
async fn fit_to_budget(
    composer: &Composer,
    snapshotter: &Snapshotter,
    n: &mut Notification,
    budget: usize,
) -> Result<crate::mail::Mail, String> {
    for _ in 0..4 {
        let mail = composer.compose(n).map_err(|e| e.to_string())?;
        let size = mail.message.formatted().len();
        if size <= budget {
            return Ok(mail);
        }
        let Ok(picture) = &n.picture else {
            return Err(format!(
                "the message is {size} bytes even without a picture, over smtp.max_message_bytes ({budget})"
            ));
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
            Err(why) => Err(format!("the picture was too large to mail ({why})")),
        };
    }
    Err(format!(
        "the message could not be brought under smtp.max_message_bytes ({budget})"
    ))
}
