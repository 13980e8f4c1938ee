//! The SMTP transport: one pooled lettre transport per process, TLS by port, AUTH with the
//! app password (PLAIN/LOGIN) or an XOAUTH2 access token, and a hard timeout around every
//! send.
//!
//! With `smtp.auth: oauth2` the credentials change every hour, so the transport is rebuilt
//! (its pool with it) whenever [`TokenSource`] hands out a new token. Gmail refuses a bad
//! token with a `334` challenge that lettre reports as a client error; the send is then
//! tried once more with a freshly refreshed token before the failure is reported.
//!
//! lettre's own timeout bounds only the TCP connect, not the TLS handshake or the wait for
//! replies, so each send is wrapped in `tokio::time::timeout`. At most
//! `smtp.max_connections` sends run at once: Gmail answers bursts of logins with
//! `454 4.7.0 Too many login attempts`, and the pool lets one session carry many mails.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{Mutex, Semaphore};

use super::classify::{
    classify, is_oauth_refusal, oauth_failure, timeout_failure, Failure, HINT_OAUTH_REFUSED,
};
use super::oauth::{OAuthError, TokenSource};
use crate::config::{AuthMethod, Security, SmtpConfig};
use crate::secret::Secret;

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
    #[error(transparent)]
    OAuth(#[from] OAuthError),
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
    login: Arc<Login>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;

enum Login {
    /// App password: one transport for the life of the process.
    Password(Transport),
    /// XOAUTH2: a transport per access token.
    OAuth(Box<OAuthLogin>),
}

struct OAuthLogin {
    builder: AsyncSmtpTransportBuilder,
    username: String,
    tokens: TokenSource,
    current: Mutex<Option<(Secret, Transport)>>,
}

impl Mailer {
    pub fn new(smtp: &SmtpConfig) -> Result<Mailer, TransportError> {
        let builder = Self::builder(smtp)?;
        let login = match smtp.auth {
            AuthMethod::Password => {
                let password = smtp.app_password();
                Login::Password(
                    builder
                        .credentials(Credentials::new(
                            smtp.username.clone(),
                            password.expose().to_owned(),
                        ))
                        .build(),
                )
            }
            AuthMethod::Oauth2 => Login::OAuth(Box::new(OAuthLogin {
                builder: builder.authentication(vec![Mechanism::Xoauth2]),
                username: smtp.username.clone(),
                tokens: TokenSource::new(&smtp.oauth2, smtp.timeout.0)?,
                current: Mutex::new(None),
            })),
        };
        Ok(Mailer {
            login: Arc::new(login),
            permits: Arc::new(Semaphore::new(smtp.max_connections as usize)),
            timeout: smtp.timeout.0,
        })
    }

    /// Host, port, TLS, timeouts and pool; everything but the credentials.
    fn builder(smtp: &SmtpConfig) -> Result<AsyncSmtpTransportBuilder, TransportError> {
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
        Ok(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
                .port(smtp.port.0)
                .tls(tls)
                .timeout(Some(smtp.timeout.0))
                .pool_config(
                    PoolConfig::new()
                        .max_size(smtp.max_connections)
                        .idle_timeout(Duration::from_secs(60)),
                ),
        )
    }

    /// The token source, when logging in with XOAUTH2 (for `doctor`).
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &*self.login {
            Login::OAuth(o) => Some(&o.tokens),
            Login::Password(_) => None,
        }
    }

    /// The transport to use now; with XOAUTH2, one built for a current (or, with `fresh`,
    /// a just-refreshed) access token.
    async fn transport(&self, fresh: bool) -> Result<Transport, Failure> {
        match &*self.login {
            Login::Password(t) => Ok(t.clone()),
            Login::OAuth(o) => {
                let OAuthLogin {
                    builder,
                    username,
                    tokens,
                    current,
                } = &**o;
                let token = if fresh {
                    tokens.refresh().await.map(|t| t.token)
                } else {
                    tokens.token().await
                }
                .map_err(|e| oauth_failure(&e))?;
                let mut current = current.lock().await;
                if let Some((t, transport)) = current.as_ref() {
                    if *t == token {
                        return Ok(transport.clone());
                    }
                }
                let transport = builder
                    .clone()
                    .credentials(Credentials::new(
                        username.clone(),
                        token.expose().to_owned(),
                    ))
                    .build();
                *current = Some((token, transport.clone()));
                Ok(transport)
            }
        }
    }

    /// Run `op` on the transport; with XOAUTH2, once more with a refreshed token if the
    /// server refused the first one.
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(Transport) -> Fut,
        Fut: std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    {
        let first = op(self.transport(false).await?)
            .await
            .map_err(|e| classify(&e));
        match first {
            Err(f) if matches!(*self.login, Login::OAuth(_)) && is_oauth_refusal(&f) => {
                tracing::info!("smtp: the server refused the XOAUTH2 token; refreshing it once");
                match op(self.transport(true).await?).await {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        let mut f = classify(&e);
                        if is_oauth_refusal(&f) {
                            f.hint = HINT_OAUTH_REFUSED;
                            f.class = super::Class::Credentials;
                        }
                        Err(f)
                    }
                }
            }
            other => other,
        }
    }

    /// Send raw RFC 5322 bytes to the envelope's recipients.
    pub async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Accepted, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        let send = self.with_retry(|t| async move { t.send_raw(envelope, bytes).await });
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(resp)) => Ok(accepted(&resp)),
            Ok(Err(f)) => Err(f),
            Err(_) => Err(timeout_failure(self.timeout.as_secs())),
        }
    }

    /// Connect, TLS, EHLO, AUTH and NOOP without sending anything.
    pub async fn test_connection(&self) -> Result<(), Failure> {
        let test = self.with_retry(|t| async move { t.test_connection().await });
        match tokio::time::timeout(self.timeout, test).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(f)) => Err(f),
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
