//! The one place where the stages are wired together:
//!
//! ```text
//! sources (MQTT) ──Input──▶ policy ──Event──▶ snapshot ──Notification──▶ mail (compose)
//!                   (events,    │  │                                         │ Mail
//!                    control)   │  └──Digest──▶ mail (digests) ──────────────┤
//!                               │                                            ▼
//!       MQTT ◀──retained state──┘                     outbox (spool) ──▶ delivery ──▶ SMTP
//! ```
//!
//! Each stage is started from its settings in the [`Plan`]; this file only makes the
//! channels and hands each stage its ends. Channels are bounded, so a slow SMTP server or a
//! motion storm applies back-pressure instead of growing memory. Shutdown flows the same
//! way: the source stops, each stage drains and closes its output, and the delivery loop
//! lets in-flight sends finish (up to `shutdown_timeout`) while unsent mail stays in the
//! spool.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::event::{Event, Input};
use crate::mail::Warmer;
use crate::metrics::{metrics, OutboxStats};
use crate::mqtt::{self, broker, MqttLinks, Outgoing};
use crate::ops::discovery::{self, DiscoveryDecoder};
use crate::plan::Plan;
use crate::policy::{self, control::ControlDecoder, Digest, Policy};
use crate::snapshot::{self, Notification, Snapshotter};
use crate::{mail, outbox, sources};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Http(#[from] crate::ops::http::HttpError),
    #[error(transparent)]
    Outbox(#[from] outbox::OpenError),
    #[error("snapshot: cannot set up the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// What the running daemon exposes to the binary (and to tests).
pub struct Running {
    pub stats: Arc<OutboxStats>,
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
pub async fn start(plan: Plan, shutdown: watch::Receiver<bool>) -> Result<Running, StartError> {
    crate::tls::install_crypto_provider();
    let Plan {
        config,
        mqtt: mqtt_settings,
        policy,
        snapshot,
        mail,
        outbox,
        discovery,
    } = plan;
    let stats = Arc::new(OutboxStats::default());
    metrics().watch_outbox(stats.clone());
    let mut tasks = tokio::task::JoinSet::new();
    if config.http.enabled {
        let listener = crate::ops::http::bind(config.http.listen).await?;
        tasks.spawn(crate::ops::http::serve(listener, shutdown.clone()));
    }
    if let Some(listen) = mqtt_settings.embedded {
        broker::start(listen, mqtt_settings.config.max_packet_bytes)?;
        broker::ready(listen).await?;
        info!("no mqtt.url configured: running the embedded MQTT broker on {listen} (publish there, or set mqtt.url to use your broker)");
    }
    let (outbox, delivery) = outbox::open(outbox, stats.clone())?;
    // The first mail finds a session open (and the log shows a wrong host early).
    let warmer = delivery.as_ref().map(outbox::Delivery::warmer);
    if let Some(w) = &warmer {
        w.warm();
    }
    let snapshotter = Snapshotter::new(snapshot)?;
    let mail = Arc::new(mail);

    let (event_tx, event_rx) = mpsc::channel::<Input>(EVENT_QUEUE);
    let (mail_tx, mail_rx) = mpsc::channel::<Event>(STAGE_QUEUE);
    let (digest_tx, digest_rx) = mpsc::channel::<Digest>(STAGE_QUEUE);
    let (note_tx, note_rx) = mpsc::channel::<Notification>(STAGE_QUEUE);
    // Stages that publish (state, discovery) get a clone of `publish_tx`.
    let (publish_tx, publish_rx) = mpsc::channel::<Outgoing>(STAGE_QUEUE);
    let (connections_tx, connections_rx) = watch::channel(0u64);
    let (republish_tx, republish_rx) = mpsc::channel::<()>(4);

    // The decoders of the camera sources, the control topics and Home Assistant's topics.
    let mut decoders = sources::decoders(&config);
    let control = policy.control_prefix.clone();
    if let (Some(prefix), None) = (&control, &config.control.topic_prefix) {
        if prefix != "snapmail" {
            // Before instance ids the topics were always snapmail/…: say where they went.
            warn!("control: topics are under {prefix}/ (the instance id: instance_id, else mqtt.client_id); earlier versions always used snapmail/. Set control.topic_prefix to choose (snapmail keeps the old topics); that also silences this");
        }
    }
    if let Some(prefix) = &control {
        decoders.push(Box::new(ControlDecoder::new(prefix)));
    }
    if let Some(d) = &discovery {
        decoders.push(Box::new(DiscoveryDecoder::new(d, republish_tx)));
    }
    let links = MqttLinks {
        publish: publish_rx,
        connections: connections_tx,
    };
    tasks.spawn(mqtt::run(
        mqtt_settings,
        decoders,
        event_tx,
        links,
        shutdown.clone(),
    ));
    if let Some(d) = discovery {
        let every = config
            .homeassistant
            .stats_interval
            .0
            .max(std::time::Duration::from_secs(1));
        let (publish, connections) = (publish_tx.clone(), connections_rx.clone());
        tasks.spawn(discovery::run(
            d,
            stats.clone(),
            publish,
            connections,
            republish_rx,
            every,
        ));
    }
    let links = policy::Links {
        mail: mail_tx,
        digests: digest_tx,
        publish: control.is_some().then_some(publish_tx),
        connections: control.is_some().then_some(connections_rx),
        state_file: Some(policy.state_file.clone()),
    };
    tasks.spawn(policy::run(Policy::with_settings(policy), event_rx, links));
    let mail_rx = warm_ahead(&mut tasks, mail_rx, warmer);
    tasks.spawn(snapshot::run(snapshotter.clone(), mail_rx, note_tx));
    let digests =
        mail::stage::run_digests(mail.clone(), outbox.clone(), snapshotter.clone(), digest_rx);
    tasks.spawn(digests);
    tasks.spawn(mail::stage::run(mail, outbox, snapshotter, note_rx));
    if let Some(delivery) = delivery {
        tasks.spawn(delivery.run(stats.clone(), shutdown));
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
