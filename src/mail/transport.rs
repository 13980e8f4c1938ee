//! The SMTP transport: one process-wide pool of logged-in sessions ([`super::session`]),
//! TLS by port, AUTH with the app password (PLAIN/LOGIN) or an XOAUTH2 access token, and a
//! hard timeout around every send.
//!
//! With `smtp.auth: oauth2` the credentials change every hour: sessions logged in with an
//! older token are not reused. Gmail refuses a bad token with a `334` challenge that lettre
//! reports as a client error; the send is then tried once more with a freshly refreshed
//! token before the failure is reported.
//!
//! Each send is wrapped in `tokio::time::timeout`, which bounds the connect, the TLS
//! handshake and every wait for a reply. At most `smtp.max_connections` sends run at once:
//! Gmail answers bursts of logins with `454 4.7.0 Too many login attempts`, and the pool
//! lets one session carry many mails.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::response::Response;
use tokio::sync::{Mutex, Semaphore};

use super::classify::{
    is_oauth_refusal, oauth_failure, timeout_failure, Failure, HINT_OAUTH_REFUSED,
};
use super::oauth::{OAuthError, TokenSource};
use super::session::{Endpoint, Login as SessionLogin, Sessions};
use crate::config::{AuthMethod, SmtpConfig};
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

/// Sends finished messages over pooled, authenticated SMTP sessions.
#[derive(Clone)]
pub struct Mailer {
    login: Arc<Login>,
    sessions: Arc<Sessions>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

enum Login {
    /// App password: the same credentials for the life of the process.
    Password(Credentials),
    /// XOAUTH2: a new access token every hour or so.
    OAuth(Box<OAuthLogin>),
}

struct OAuthLogin {
    username: String,
    tokens: TokenSource,
    /// The token sessions are logged in with, and its generation number.
    current: Mutex<(Option<Secret>, u64)>,
}

impl Mailer {
    pub fn new(smtp: &SmtpConfig) -> Result<Mailer, TransportError> {
        let login = match smtp.auth {
            AuthMethod::Password => Login::Password(Credentials::new(
                smtp.username.clone(),
                smtp.app_password().expose().to_owned(),
            )),
            AuthMethod::Oauth2 => Login::OAuth(Box::new(OAuthLogin {
                username: smtp.username.clone(),
                tokens: TokenSource::new(&smtp.oauth2, smtp.timeout.0)?,
                current: Mutex::new((None, 0)),
            })),
        };
        Ok(Mailer {
            login: Arc::new(login),
            sessions: Arc::new(Sessions::new(Self::endpoint(smtp)?)),
            permits: Arc::new(Semaphore::new(smtp.max_connections as usize)),
            timeout: smtp.timeout.0,
        })
    }

    /// Host, port and TLS settings; everything but the credentials.
    fn endpoint(smtp: &SmtpConfig) -> Result<Endpoint, TransportError> {
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
        let starttls = params.build_rustls().map_err(|e| TransportError::Tls {
            host: smtp.host.clone(),
            reason: e.to_string(),
        })?;
        let implicit = crate::tls::client_config(smtp.ca_file.as_deref(), "smtp.ca_file").map_err(
            |reason| TransportError::Tls {
                host: smtp.host.clone(),
                reason,
            },
        )?;
        Ok(Endpoint {
            host: smtp.host.clone(),
            port: smtp.port.0,
            security: smtp.security(),
            starttls,
            implicit: Arc::new(implicit),
        })
    }

    /// The token source, when logging in with XOAUTH2 (for `doctor`).
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &*self.login {
            Login::OAuth(o) => Some(&o.tokens),
            Login::Password(_) => None,
        }
    }

    /// The credentials to log in with now, and their generation; with XOAUTH2, for a
    /// current (or, with `fresh`, a just-refreshed) access token.
    async fn credentials(&self, fresh: bool) -> Result<(Credentials, u64), Failure> {
        match &*self.login {
            Login::Password(c) => Ok((c.clone(), 0)),
            Login::OAuth(o) => {
                let token = if fresh {
                    o.tokens.refresh().await.map(|t| t.token)
                } else {
                    o.tokens.token().await
                }
                .map_err(|e| oauth_failure(&e))?;
                let mut current = o.current.lock().await;
                if current.0.as_ref() != Some(&token) {
                    *current = (Some(token.clone()), current.1 + 1);
                }
                let creds = Credentials::new(o.username.clone(), token.expose().to_owned());
                Ok((creds, current.1))
            }
        }
    }

    fn mechanisms(&self) -> &'static [Mechanism] {
        match &*self.login {
            Login::Password(_) => DEFAULT_MECHANISMS,
            Login::OAuth(_) => &[Mechanism::Xoauth2],
        }
    }

    /// Run `op` with the current login; with XOAUTH2, once more with a refreshed token if
    /// the server refused the first one.
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(Credentials, u64) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let (creds, generation) = self.credentials(false).await?;
        match op(creds, generation).await {
            Err(f) if matches!(*self.login, Login::OAuth(_)) && is_oauth_refusal(&f) => {
                tracing::info!("smtp: the server refused the XOAUTH2 token; refreshing it once");
                let (creds, generation) = self.credentials(true).await?;
                op(creds, generation).await.map_err(|mut f| {
                    if is_oauth_refusal(&f) {
                        f.hint = HINT_OAUTH_REFUSED;
                        f.class = super::Class::Credentials;
                    }
                    f
                })
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
        let mechanisms = self.mechanisms();
        let send = self.with_retry(|credentials, generation| async move {
            let login = SessionLogin {
                credentials: &credentials,
                mechanisms,
                generation,
            };
            self.sessions.send(&login, envelope, bytes).await
        });
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(resp)) => Ok(accepted(&resp)),
            Ok(Err(f)) => Err(f),
            Err(_) => Err(timeout_failure(self.timeout.as_secs())),
        }
    }

    /// Connect, TLS, EHLO and AUTH without sending anything.
    pub async fn test_connection(&self) -> Result<(), Failure> {
        let mechanisms = self.mechanisms();
        let test = self.with_retry(|credentials, generation| async move {
            let login = SessionLogin {
                credentials: &credentials,
                mechanisms,
                generation,
            };
            self.sessions.test(&login).await
        });
        match tokio::time::timeout(self.timeout, test).await {
            Ok(Ok(())) => Ok(()),
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
