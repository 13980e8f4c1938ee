//! Process-wide TLS setup, and the one way snapmail trusts a server it connects to itself
//! (SMTP, MQTT, `doctor`).
//!
//! rustls needs exactly one crypto provider. reqwest and rumqttc are built without their
//! own provider choice, so we install *ring* once, before any of them builds a TLS config;
//! otherwise rustls panics with "no process-level CryptoProvider".

use std::path::Path;
use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is equally fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A TLS client configuration trusting the Web PKI roots compiled into the binary, plus the
/// PEM certificates in `ca_file` (named `key` in errors, e.g. `smtp.ca_file`): as CAs for a
/// server with a private CA, and as exact server certificates for a self-signed server.
///
/// Why both: a self-signed certificate made the ordinary way (`openssl req -x509`) says it is
/// a CA, and path validation refuses a CA certificate as a server's own
/// (`CaUsedAsEndEntity`) although the user handed us exactly that certificate. So a server
/// presenting, byte for byte, a certificate from `ca_file` is trusted for the names it
/// carries (pinning), as curl and Python's smtplib do; everything else goes through normal
/// validation.
pub fn client_config(ca_file: Option<&Path>, key: &str) -> Result<rustls::ClientConfig, String> {
    install_crypto_provider();
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut pinned = Vec::new();
    if let Some(path) = ca_file {
        pinned = ca_file_certificates(path, key)?;
        for cert in &pinned {
            roots
                .add(cert.clone())
                .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("{key}: {e}"))?;
    if pinned.is_empty() {
        return Ok(rustls::ClientConfig::builder()
            .with_webpki_verifier(webpki)
            .with_no_client_auth());
    }
    Ok(rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { pinned, webpki }))
        .with_no_client_auth())
}

/// The certificates in the PEM file `path` (named `key` in errors): at least one, or an
/// error that says what is wrong with the file.
pub fn ca_file_certificates(
    path: &Path,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{key}: {} does not exist; give the path of a PEM certificate or remove the key",
            path.display()
        ),
        _ => format!("{key}: cannot read {}: {e}", path.display()),
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Normal validation, or the exact certificate the user gave (see [`client_config`]).
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                // The very certificate the user trusts; it must still name the server.
                let cert = webpki::EndEntityCert::try_from(end_entity)
                    .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// webpki's verdict in rustls' terms (the names users and `doctor` see).
fn pki_error(e: webpki::Error) -> CertificateError {
    match e {
        webpki::Error::CertNotValidForName(_) => CertificateError::NotValidForName,
        webpki::Error::CertExpired { .. } => CertificateError::Expired,
        webpki::Error::BadDer | webpki::Error::BadDerTime => CertificateError::BadEncoding,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}
