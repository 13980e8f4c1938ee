//! The SMTP transport: one pooled lettre transport per process, TLS by port, AUTH with the
//! app password, and a hard timeout around every send.
//!
//! lettre's own timeout bounds only the TCP connect, not the TLS handshake or the wait for
//! replies, so each send is wrapped in `tokio::time::timeout`. At most
//! `smtp.max_connections` sends run at once: Gmail answers bursts of logins with
//! `454 4.7.0 Too many login attempts`, and the pool lets one session carry many mails.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Semaphore;

use super::classify::{classify, timeout_failure, Failure};
use crate::config::{Security, SmtpConfig};

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("smtp.ca_file: cannot read {path}: {source}")]
    CaRead {
        path: String,
        source: std::io::Error,
    },
    #[error("smtp.ca_file: {path} is not a PEM certificate: {reason}")]
    CaParse { path: String, reason: String },
    #[error("smtp: cannot set up TLS for {host}: {reason}")]
    Tls { host: String, reason: String },
}

/// The server's positive answer to a send.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub code: u16,
    pub text: String,
}

/// Sends finished messages over a pooled, authenticated SMTP transport.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Mailer {
    pub fn new(smtp: &SmtpConfig) -> Result<Mailer, TransportError> {
        crate::tls::install_crypto_provider();
        let mut params = TlsParameters::builder(smtp.host.clone());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path).map_err(|source| TransportError::CaRead {
                path: path.display().to_string(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| TransportError::CaParse {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build_rustls().map_err(|e| TransportError::Tls {
            host: smtp.host.clone(),
            reason: e.to_string(),
        })?;
        let tls = match smtp.security() {
            Security::Tls => Tls::Wrapper(params),
            Security::Starttls => Tls::Required(params),
        };
        let password = smtp.app_password();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(smtp.port.0)
            .tls(tls)
            .credentials(Credentials::new(
                smtp.username.clone(),
                password.expose().to_owned(),
            ))
            .timeout(Some(smtp.timeout.0))
            .pool_config(
                PoolConfig::new()
                    .max_size(smtp.max_connections)
                    .idle_timeout(Duration::from_secs(60)),
            )
            .build();
        Ok(Mailer {
            transport,
            permits: Arc::new(Semaphore::new(smtp.max_connections as usize)),
            timeout: smtp.timeout.0,
        })
    }

    /// Send raw RFC 5322 bytes to the envelope's recipients.
    pub async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Accepted, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        match tokio::time::timeout(self.timeout, self.transport.send_raw(envelope, bytes)).await {
            Ok(Ok(resp)) => Ok(accepted(&resp)),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(timeout_failure(self.timeout.as_secs())),
        }
    }

    /// Connect, TLS, EHLO, AUTH and NOOP without sending anything.
    pub async fn test_connection(&self) -> Result<(), Failure> {
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(timeout_failure(self.timeout.as_secs())),
        }
    }
}

fn accepted(resp: &Response) -> Accepted {
    Accepted {
        code: u16::from(resp.code()),
        text: resp.message().collect::<Vec<_>>().join(" "),
    }
}
