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

/// A TLS client configuration trusting the Web PKI roots compiled into the binary, plus the
/// PEM certificates in `ca_file` (named `key` in errors, e.g. `smtp.ca_file`) for servers
/// with a private CA.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    key: &str,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    install_crypto_provider();
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{key}: {} is not PEM: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{key}: {} holds no certificate", path.display()));
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}
