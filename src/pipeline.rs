//! The one place where the stages are wired together:
//!
//! ```text
//! sources (MQTT) ──Input──▶ policy ──Event──▶ snapshot ──Notification──▶ mail (compose)
//!                   (events,    │  │                                         │ Mail
//!                    control)   │  └──Digest──▶ digest (pictures, compose) ──┤
//!                               │                                            ▼
//!       MQTT ◀──retained state──┘                     outbox (spool) ──▶ delivery ──▶ SMTP
//! ```
//!
//! Channels between stages are bounded, so a slow SMTP server or a motion storm applies
//! back-pressure instead of growing memory. Shutdown flows the same way: the source stops,
//! each stage drains and closes its output, and the delivery loop lets in-flight sends
//! finish (up to `shutdown_timeout`) while unsent mail stays in the spool.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::event::Event;
use crate::mail::{Composer, Mailer, Warmer};
use crate::outbox::delivery::{self, DeliverySettings};
use crate::outbox::preview::PreviewDir;
use crate::outbox::stats::Stats;
use crate::outbox::{Outbox, SpoolOutbox};
use crate::policy::{self, Digest, Policy};
use crate::snapshot::{self, Notification, Snapshotter};
use crate::sources::mqtt::{self, BrokerAddress, MqttLinks, MqttSettings};
use crate::sources::{self, broker, Input, Outgoing};

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
    #[error("config: {0}")]
    Policy(String),
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
/// Mails being composed and written to the spool at once.
const QUEUE_IN_FLIGHT: usize = 8;

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
    let policy = Policy::new(&config).map_err(StartError::Policy)?;
    let mut decoders = sources::decoders(&config);
    if let Some(prefix) = &policy.settings().control_prefix {
        decoders.push(Box::new(policy::control::ControlDecoder::new(prefix)));
    }

    // Outbox: SMTP with a durable spool, or preview files.
    let (outbox, delivery_parts, warmer) = match &config.smtp {
        Some(smtp) => {
            let mailer = Mailer::new(smtp)?;
            // The first mail finds a session open (and the log shows a wrong host early).
            mailer.warm();
            let warmer = mailer.warmer();
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
            (Outbox::Spool(spool), Some(parts), Some(warmer))
        }
        None => {
            let dir = PreviewDir::open(&config.outbox.preview_dir)?;
            info!(
                "no smtp section configured: preview mode, mails are written as .eml files to {}",
                config.outbox.preview_dir.display()
            );
            (Outbox::Preview(dir), None, None)
        }
    };
    let composers = Arc::new(Composers::new(&config).map_err(StartError::Address)?);
    let snapshotter =
        Snapshotter::new(&config).map_err(|e| StartError::HttpClient(e.to_string()))?;

    let (event_tx, event_rx) = mpsc::channel::<Input>(EVENT_QUEUE);
    let (mail_tx, mail_rx) = mpsc::channel::<Event>(STAGE_QUEUE);
    let (digest_tx, digest_rx) = mpsc::channel::<Digest>(STAGE_QUEUE);
    let (note_tx, note_rx) = mpsc::channel::<Notification>(STAGE_QUEUE);

    // Home Assistant discovery: its decoder listens for HA's restarts and the test button.
    let discovery = config
        .homeassistant
        .discovery
        .then(|| crate::ops::discovery::Discovery {
            prefix: config.homeassistant.prefix.clone(),
            base: config.control.topic_prefix.clone(),
            cameras: config.cameras.keys().cloned().collect(),
        });
    let (republish_tx, republish_rx) = mpsc::channel::<()>(4);
    if let Some(d) = &discovery {
        decoders.push(Box::new(crate::ops::discovery::DiscoveryDecoder::new(
            d,
            republish_tx,
        )));
    }
    let settings = MqttSettings {
        address,
        config: config.mqtt.clone(),
        last_will: discovery.as_ref().map(|d| d.last_will()),
    };
    // Stages that publish (state, discovery) get a clone of `publish_tx`.
    let (publish_tx, publish_rx) = mpsc::channel::<Outgoing>(STAGE_QUEUE);
    let (connections_tx, connections_rx) = watch::channel(0u64);
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
    if let Some(d) = discovery {
        tasks.spawn(crate::ops::discovery::run(
            d,
            stats.clone(),
            publish_tx.clone(),
            connections_rx.clone(),
            republish_rx,
            config
                .homeassistant
                .stats_interval
                .0
                .max(std::time::Duration::from_secs(1)),
        ));
    }
    let control_on = policy.settings().control_prefix.is_some();
    let links = policy::Links {
        mail: mail_tx,
        digests: digest_tx,
        publish: control_on.then_some(publish_tx),
        connections: control_on.then_some(connections_rx),
        state_file: Some(config.state_file()),
    };
    tasks.spawn(policy::run(policy, event_rx, links));
    let budget = config
        .smtp
        .as_ref()
        .map_or(usize::MAX, |s| s.max_message_bytes);
    let mail_rx = warm_ahead(&mut tasks, mail_rx, warmer);
    tasks.spawn(snapshot::run(snapshotter.clone(), mail_rx, note_tx));
    tasks.spawn(digest_stage(
        composers.clone(),
        outbox.clone(),
        snapshotter.clone(),
        config.digest.image_size,
        digest_rx,
    ));
    tasks.spawn(mail_stage(composers, outbox, snapshotter, budget, note_rx));
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

/// Policy → snapshot, opening an SMTP session for each event on its way ([`Warmer::warm`]),
/// so TCP, TLS and EHLO overlap the picture's fetch instead of following it.
fn warm_ahead(
    tasks: &mut tokio::task::JoinSet<()>,
    mut rx: mpsc::Receiver<Event>,
    warmer: Option<Warmer>,
) -> mpsc::Receiver<Event> {
    let Some(warmer) = warmer else {
        return rx;
    };
    let (tx, out) = mpsc::channel(1);
    tasks.spawn(async move {
        while let Some(event) = rx.recv().await {
            warmer.warm();
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    out
}

/// The composer for each camera's recipients (`cameras.<name>.to`, `defaults.to`,
/// `smtp.to`); the outbox takes the envelope from the composed message's headers.
struct Composers {
    default: Composer,
    by_camera: HashMap<String, Composer>,
}

impl Composers {
    fn new(config: &crate::config::Config) -> Result<Composers, String> {
        let (from, base) = match &config.smtp {
            Some(smtp) => (smtp.from_address().to_owned(), smtp.recipients()),
            None => (
                "snapmail <snapmail@localhost>".to_owned(),
                vec!["preview@localhost".to_owned()],
            ),
        };
        let make = |c: &crate::config::CameraConfig, key: &str| {
            let to =
                c.to.as_ref()
                    .filter(|l| !l.0.is_empty())
                    .map_or(base.clone(), |l| l.0.clone());
            Composer::new(&from, &to).map_err(|e| format!("{key}.to: {e}"))
        };
        let default = make(&config.defaults, "defaults")?;
        let mut by_camera = HashMap::new();
        for name in config.cameras.keys() {
            let c = config.camera(name);
            by_camera.insert(name.clone(), make(&c, &format!("cameras.{name}"))?);
        }
        Ok(Composers { default, by_camera })
    }

    fn for_camera(&self, camera: &str) -> &Composer {
        self.by_camera.get(camera).unwrap_or(&self.default)
    }
}

/// Fetch small pictures for each digest's sampled events, compose it, queue it.
async fn digest_stage(
    composers: Arc<Composers>,
    outbox: Outbox,
    snapshotter: Snapshotter,
    image_size: u32,
    mut rx: mpsc::Receiver<Digest>,
) {
    while let Some(d) = rx.recv().await {
        let mut pictures = Vec::with_capacity(d.samples.len());
        for ev in &d.samples {
            pictures.push(snapshotter.picture_sized(ev, image_size, image_size).await);
        }
        let mail =
            match crate::mail::digest::compose(composers.for_camera(&d.camera), &d, &pictures) {
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
async fn mail_stage(
    composers: Arc<Composers>,
    outbox: Outbox,
    snapshotter: Snapshotter,
    max_message_bytes: usize,
    rx: mpsc::Receiver<Notification>,
) {
    // Queuing a mail waits for its fsyncs; with several in flight the file system commits
    // them together instead of one journal commit per mail.
    let notifications =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
    notifications
        .for_each_concurrent(QUEUE_IN_FLIGHT, |mut n| {
            let (composers, outbox, snapshotter) = (&composers, &outbox, &snapshotter);
            async move {
                let composer = composers.for_camera(&n.event.camera);
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
