//! Process-wide TLS setup.
//!
//! rustls needs exactly one crypto provider. lettre, reqwest and rumqttc are all built
//! without their own provider choice, so we install *ring* once, before any of them builds a
//! TLS config; otherwise rustls panics with "no process-level CryptoProvider".

use std::sync::Once;

pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is equally fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
