//! The MQTT connection: one client for every configured source.
//!
//! rumqttc's event loop reconnects on the next `poll()` after an error, immediately and
//! forever, and forgets subscriptions. So this loop adds what a daemon needs: a capped,
//! jittered pause after each failure, a fresh SUBSCRIBE on every ConnAck, and a packet
//! limit large enough for snapshot payloads. It never returns because the broker is down;
//! it returns only on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, MqttOptions, Packet, QoS, Transport,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{matches_any, BrokerAddress, Decoded, Decoder, Message, Outgoing};
use crate::backoff::Backoff;
use crate::config::{ConfigError, MqttConfig};
use crate::event::Input;
use crate::text;

/// Connection settings resolved from [`MqttConfig`] (plus the embedded broker's address).
#[derive(Clone)]
pub struct MqttSettings {
    pub address: BrokerAddress,
    /// `mqtt.url` is unset: the embedded broker must listen here before the client connects.
    pub embedded: Option<SocketAddr>,
    pub config: MqttConfig,
    /// Published by the broker if snapmail disappears (availability topics).
    pub last_will: Option<Outgoing>,
}

impl MqttSettings {
    /// `mqtt.url` parsed, or the embedded broker's address when it is unset.
    pub fn from_config(config: &MqttConfig) -> Result<MqttSettings, ConfigError> {
        let (address, embedded) = match &config.url {
            Some(url) => (
                BrokerAddress::parse(url)
                    .map_err(|e| ConfigError::invalid(format!("mqtt.url: {e}")))?,
                None,
            ),
            None => (
                BrokerAddress {
                    host: config.listen.ip().to_string(),
                    port: config.listen.port(),
                    tls: false,
                },
                Some(config.listen),
            ),
        };
        Ok(MqttSettings {
            address,
            embedded,
            config: config.clone(),
            last_will: None,
        })
    }
}

/// The other ends of the MQTT task: what to publish, and a counter of successful
/// connections (it moves on every ConnAck, so retained state can be published again).
pub struct MqttLinks {
    pub publish: mpsc::Receiver<Outgoing>,
    pub connections: watch::Sender<u64>,
}

/// Runs the MQTT client until `shutdown` flips, sending decoded events and control
/// commands to `out`.
pub async fn run(
    settings: MqttSettings,
    mut decoders: Vec<Box<dyn Decoder>>,
    out: mpsc::Sender<Input>,
    links: MqttLinks,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &settings.config;
    let addr = &settings.address;
    let mut opts = client_options(cfg, addr, cfg.client_id.clone());
    opts.set_keep_alive(cfg.keep_alive.0.max(Duration::from_secs(1)));
    opts.set_clean_session(cfg.clean_session);
    if let Some(will) = &settings.last_will {
        opts.set_last_will(rumqttc::LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            will.retain,
        ));
    }
    let filters: Vec<Vec<String>> = decoders.iter().map(|d| d.topics()).collect();
    let all_topics: Vec<String> = filters.iter().flatten().cloned().collect();
    let qos = if cfg.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };

    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    // Publishing waits for room in rumqttc's request queue, which only drains while the
    // event loop below is polled, so it runs in its own task.
    let publisher = {
        let client = client.clone();
        let mut rx = links.publish;
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if let Err(e) = client
                    .publish(m.topic.clone(), QoS::AtLeastOnce, m.retain, m.payload)
                    .await
                {
                    warn!(topic = %m.topic, "mqtt: cannot publish: {e}");
                }
            }
        })
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut connected = false;
    info!(broker = %format!("{}:{}", addr.host, addr.port), "mqtt: connecting");

    loop {
        let polled = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            p = eventloop.poll() => p,
        };
        match polled {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                backoff.reset();
                info!(session_present = ack.session_present, "mqtt: connected");
                links.connections.send_modify(|n| *n += 1);
                crate::metrics::metrics().set_mqtt_connected(true);
                // rumqttc does not restore subscriptions after a reconnect: subscribe every time,
                // every topic in one SUBSCRIBE, so one SUBACK means all of them are live.
                let filters = all_topics
                    .iter()
                    .map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos));
                if let Err(e) = client.try_subscribe_many(filters) {
                    warn!("mqtt: could not queue SUBSCRIBE {all_topics:?}: {e}");
                }
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                info!(topics = ?all_topics, "mqtt: subscribed");
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let topic = p.topic.as_str();
                let msg = Message {
                    topic,
                    payload: &p.payload,
                    retained: p.retain,
                };
                for (decoder, topics) in decoders.iter_mut().zip(&filters) {
                    if !matches_any(topic, topics) {
                        continue;
                    }
                    match decoder.decode(msg) {
                        Decoded::Event(ev) => {
                            debug!(source = ev.source, camera = %ev.camera, id = %ev.id, "mqtt: event decoded");
                            crate::metrics::metrics().event_received(ev.source, &ev.camera);
                            if out.send(Input::Event(ev)).await.is_err() {
                                return;
                            }
                        }
                        Decoded::Control(c) => {
                            debug!(topic = %text::clean(topic), "mqtt: control command {c:?}");
                            if out.send(Input::Control(c)).await.is_err() {
                                return;
                            }
                        }
                        // Topics and reasons quote payloads: shown without hidden characters.
                        Decoded::Ignored(why) => debug!(
                            topic = %text::clean(topic),
                            "mqtt: ignored: {}",
                            text::clean(&why)
                        ),
                        Decoded::Malformed(why) => warn!(
                            topic = %text::clean(topic),
                            bytes = p.payload.len(),
                            "mqtt: unreadable message ignored: {}",
                            text::clean(&why)
                        ),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                crate::metrics::metrics().set_mqtt_connected(false);
                let delay = backoff.next_delay();
                if connected || backoff.attempts() <= 1 {
                    warn!(
                        "mqtt: connection to {}:{} failed: {}; retrying in {:.1}s",
                        addr.host,
                        addr.port,
                        describe(&e),
                        delay.as_secs_f64()
                    );
                } else {
                    debug!(
                        "mqtt: still cannot connect: {}; retrying in {:.1}s",
                        describe(&e),
                        delay.as_secs_f64()
                    );
                }
                connected = false;
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    publisher.abort();
    let _ = client.try_disconnect();
    info!("mqtt: stopped");
}

/// A connection error in words a user can act on.
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as C;
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword)
        | ConnectionError::ConnectionRefused(C::NotAuthorized) => {
            "the broker refused the login; check mqtt.username and mqtt.password".into()
        }
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?})")
        }
        // rumqttc cannot skip an oversized packet, so it drops the connection; say which
        // setting decides, since the default error reads like a protocol fault.
        ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => format!(
            "a message of {n} bytes is larger than mqtt.max_packet_bytes; it was dropped \
             (raise mqtt.max_packet_bytes if pictures this large are expected)"
        ),
        ConnectionError::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

/// Options every snapmail MQTT client shares (the daemon, `doctor`): address, packet limits
/// large enough for snapshots, credentials, and TLS with the bundled web PKI roots for
/// `mqtts://`.
pub fn client_options(cfg: &MqttConfig, addr: &BrokerAddress, client_id: String) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    opts.set_max_packet_size(cfg.max_packet_bytes, 64 * 1024);
    if let Some(user) = &cfg.username {
        let pass = cfg
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        opts.set_credentials(user.clone(), pass);
    }
    if addr.tls {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        opts.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
        ));
    }
    opts
}
