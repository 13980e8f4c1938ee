//! The MQTT connection: one client for every configured source.
//!
//! The client is the MQTT 3.1.1 crate of rumqttc's maintained fork, `rumqttc-v4-next` (see
//! docs/security.md for why). Its event loop reconnects on the next `poll()` after an error,
//! immediately and forever; with a clean session the broker keeps no subscriptions, and the
//! client drops the requests it held for the lost connection when the new ConnAck says no
//! session is present. So this loop adds what a daemon needs: a capped, jittered pause after
//! each failure, a fresh SUBSCRIBE on every ConnAck, and a packet limit large enough for
//! snapshot payloads. Everything snapmail publishes is retained state that its owners publish
//! again on every connection (the `connections` counter), so dropped requests lose nothing.
//! It never returns because the broker is down; it returns only on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, MqttOptions, Packet, PublishOptions, QoS,
    Transport,
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
    /// For `mqtts://`: the public CAs plus `mqtt.ca_file`, read once at start so a bad file
    /// is a configuration error, not a connection failure repeated forever.
    pub tls: Option<Arc<rustls::ClientConfig>>,
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
        let tls = match (&config.ca_file, address.tls) {
            (ca_file, true) => Some(Arc::new(
                crate::tls::client_config(ca_file.as_deref(), "mqtt.ca_file")
                    .map_err(ConfigError::invalid)?,
            )),
            (Some(_), false) => {
                let why = match &config.url {
                    Some(url) => format!("mqtt.url ({url}) is plain MQTT"),
                    None => "mqtt.url is unset, so snapmail runs its own plain broker".into(),
                };
                return Err(ConfigError::invalid(format!(
                    "mqtt.ca_file: is set but {why}; for a broker's TLS listener use \
                     mqtts://host:8883, or remove mqtt.ca_file"
                )));
            }
            (None, false) => None,
        };
        Ok(MqttSettings {
            address,
            embedded,
            config: config.clone(),
            last_will: None,
            tls,
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
    let mut opts = client_options(&settings, cfg.client_id.clone());
    opts.set_keep_alive(keep_alive_secs(cfg.keep_alive.0));
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

    let (client, mut eventloop) = AsyncClient::builder(opts).capacity(64).build();
    // Publishing waits for room in rumqttc's request queue, which only drains while the
    // event loop below is polled, so it runs in its own task. (SUBSCRIBE travels in a
    // separate queue, so a backlog of publishes never holds up the resubscription.)
    let publisher = {
        let client = client.clone();
        let mut rx = links.publish;
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if let Err(e) = client
                    .publish(
                        m.topic.clone(),
                        m.payload,
                        PublishOptions::new(QoS::AtLeastOnce).retain(m.retain),
                    )
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
                // A clean session starts with no subscriptions: subscribe every time, every
                // topic in one SUBSCRIBE, so one SUBACK means all of them are live.
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
                // The client refuses a PUBLISH whose topic is not UTF-8 (a protocol error that
                // drops the connection), so this never skips a message in practice.
                let Ok(topic) = std::str::from_utf8(&p.topic) else {
                    continue;
                };
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
        e if certificate_refused(e) => format!("{e}; {HINT_CERTIFICATE}"),
        other => other.to_string(),
    }
}

/// What to do when the broker's certificate is refused.
pub const HINT_CERTIFICATE: &str = "the broker's TLS certificate was refused: a broker with a \
    private CA or a self-signed certificate needs mqtt.ca_file (the CA's or the broker's own \
    certificate, as PEM), and the host in mqtt.url must be a name the certificate is issued for";

/// The TLS handshake failed because the broker's certificate was not trusted (as opposed to,
/// say, a plain listener answering a TLS hello).
pub fn certificate_refused(e: &ConnectionError) -> bool {
    let rustls_error = match e {
        ConnectionError::Tls(rumqttc::TlsError::TLS(t)) => Some(t),
        // tokio-rustls reports handshake failures as I/O errors carrying the rustls error.
        ConnectionError::Tls(rumqttc::TlsError::Io(io)) => {
            io.get_ref().and_then(|inner| inner.downcast_ref())
        }
        _ => None,
    };
    matches!(rustls_error, Some(rustls::Error::InvalidCertificate(_)))
}

/// MQTT's keep-alive is whole seconds (at most 65535); at least one, since zero turns it off.
fn keep_alive_secs(keep_alive: Duration) -> u16 {
    keep_alive.as_secs().clamp(1, u64::from(u16::MAX)) as u16
}

/// Options every snapmail MQTT client shares (the daemon, `doctor`): address, packet limits
/// large enough for snapshots, credentials, and for `mqtts://` the TLS configuration the
/// settings hold (public roots plus `mqtt.ca_file`).
pub fn client_options(settings: &MqttSettings, client_id: String) -> MqttOptions {
    let (cfg, addr) = (&settings.config, &settings.address);
    let mut opts = MqttOptions::new(client_id, (addr.host.clone(), addr.port));
    opts.set_max_packet_size(cfg.max_packet_bytes, 64 * 1024);
    // A username without a password (or an empty password) goes without the password
    // field, as MQTT 3.1.1 allows; an empty username means no login at all.
    let pass = cfg
        .password
        .as_ref()
        .map(|p| p.expose())
        .unwrap_or_default();
    match &cfg.username {
        Some(user) if !user.is_empty() && !pass.is_empty() => {
            opts.set_credentials(user.clone(), pass.to_owned());
        }
        Some(user) if !user.is_empty() => {
            opts.set_username(user.clone());
        }
        _ => {}
    }
    if let Some(tls) = &settings.tls {
        opts.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use rumqttc::ConnectAuth;

    #[test]
    fn keep_alive_is_whole_seconds_between_one_and_the_protocol_maximum() {
        assert_eq!(keep_alive_secs(Duration::from_secs(30)), 30);
        assert_eq!(keep_alive_secs(Duration::from_millis(1500)), 1);
        assert_eq!(keep_alive_secs(Duration::ZERO), 1);
        assert_eq!(keep_alive_secs(Duration::from_secs(1 << 20)), u16::MAX);
    }

    fn settings(cfg: MqttConfig) -> MqttSettings {
        MqttSettings::from_config(&cfg).unwrap()
    }

    fn url(url: &str) -> MqttConfig {
        MqttConfig {
            url: Some(url.into()),
            ..MqttConfig::default()
        }
    }

    fn auth(username: Option<&str>, password: Option<&str>) -> ConnectAuth {
        let cfg = MqttConfig {
            username: username.map(str::to_owned),
            password: password.map(Secret::new),
            ..url("mqtt://broker.lan:1883")
        };
        client_options(&settings(cfg), "id".into()).auth().clone()
    }

    #[test]
    fn the_login_sends_only_the_fields_that_are_set() {
        assert_eq!(
            auth(Some("cam"), Some("pw")),
            ConnectAuth::UsernamePassword {
                username: "cam".into(),
                password: "pw".into()
            }
        );
        let username_only = ConnectAuth::Username {
            username: "cam".into(),
        };
        assert_eq!(auth(Some("cam"), None), username_only);
        assert_eq!(auth(Some("cam"), Some("")), username_only);
        assert_eq!(auth(None, Some("pw")), ConnectAuth::None);
        assert_eq!(auth(Some(""), Some("pw")), ConnectAuth::None);
    }

    #[test]
    fn options_carry_the_broker_packet_limit_and_tls_choice() {
        let opts = client_options(&settings(url("mqtt://broker.lan:1884")), "id".into());
        assert_eq!(opts.broker().tcp_address(), Some(("broker.lan", 1884)));
        assert_eq!(opts.max_packet_size(), 16 * 1024 * 1024);
        assert!(matches!(opts.transport(), Transport::Tcp));
        let opts = client_options(&settings(url("mqtts://broker.lan:8883")), "id".into());
        assert!(matches!(opts.transport(), Transport::Tls(_)));
    }

    #[test]
    fn ca_file_problems_are_configuration_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("broker.crt");
        std::fs::write(&not_pem, "hello").unwrap();
        let tls = MqttConfig {
            ca_file: Some(not_pem),
            ..url("mqtts://broker.lan:8883")
        };
        let e = MqttSettings::from_config(&tls).err().unwrap().to_string();
        assert!(
            e.contains("mqtt.ca_file") && e.contains("no certificate"),
            "{e}"
        );

        let plain = MqttConfig {
            url: Some("mqtt://broker.lan:1883".into()),
            ..tls.clone()
        };
        let e = MqttSettings::from_config(&plain).err().unwrap().to_string();
        assert!(
            e.contains("mqtt.ca_file") && e.contains("mqtts://host:8883"),
            "{e}"
        );
        let embedded = MqttConfig { url: None, ..tls };
        let e = MqttSettings::from_config(&embedded)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("its own plain broker"), "{e}");
    }
}
