//! The embedded MQTT broker (rumqttd) used when `mqtt.url` is unset, so a new user can
//! `mosquitto_pub` at snapmail without installing a broker first.
//!
//! rumqttd runs its own threads; we bind the listening port ourselves first so that a port
//! already in use is a clear startup error instead of a log line from a background thread.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker: cannot listen on {addr}: {source}; another broker may already run there — set mqtt.url to use it, or mqtt.listen to move the embedded one")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded MQTT broker: {0}")]
    Start(String),
}

/// Start the embedded broker on `listen`. It runs until the process exits.
pub fn start(listen: SocketAddr, max_payload: usize) -> Result<(), BrokerError> {
    // Probe the port: rumqttd would only log a bind failure from its own thread.
    drop(
        TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?,
    );

    let router = RouterConfig {
        max_connections: 256,
        max_outgoing_packet_count: 200,
        max_segment_size: max_payload.max(1024 * 1024) * 2,
        max_segment_count: 4,
        ..Default::default()
    };
    let server = ServerSettings {
        name: "snapmail-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("embedded".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    Ok(())
}

/// Wait until the embedded broker accepts connections: it binds on its own thread, and a
/// client connecting before that would only log a refused connection at start.
pub async fn ready(listen: SocketAddr) -> Result<(), BrokerError> {
    let mut probe = listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(probe).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(BrokerError::Start(format!(
                    "not accepting connections on {listen} 5 s after start ({e})"
                )))
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}
