//! Shared helpers for the integration tests: real brokers and servers on 127.0.0.1, test
//! images, and a handle on the `snapmail` binary.
#![allow(dead_code)]

pub mod certs;
pub mod cli;
pub mod daemon;
pub mod http;
pub mod images;
pub mod mosquitto;
pub mod rig;
pub mod smtp;
pub mod wait;
pub mod wan;

/// Installs ring as the process-wide rustls provider. Idempotent; the clients used in tests
/// (reqwest, rumqttc) are built without a provider of their own.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only means a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
