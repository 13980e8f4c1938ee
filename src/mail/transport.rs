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

    /// The login to use now: for XOAUTH2, with a current (or, with `fresh`, a
    /// just-refreshed) access token and the generation of that token.
    async fn login(&self, fresh: bool) -> Result<SessionLogin, Failure> {
        match &*self.login {
            Login::Password(c) => Ok(SessionLogin {
                credentials: c.clone(),
                mechanisms: DEFAULT_MECHANISMS,
                generation: 0,
            }),
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
                Ok(SessionLogin {
                    credentials: Credentials::new(o.username.clone(), token.expose().to_owned()),
                    mechanisms: &[Mechanism::Xoauth2],
                    generation: current.1,
                })
            }
        }
    }

    /// Run `op` with the current login, within `smtp.timeout`; with XOAUTH2, once more with
    /// a refreshed token if the server refused the first one.
    async fn with_login<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(SessionLogin) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let attempt = async {
            match op(self.login(false).await?).await {
                Err(f) if matches!(*self.login, Login::OAuth(_)) && is_oauth_refusal(&f) => {
                    tracing::info!(
                        "smtp: the server refused the XOAUTH2 token; refreshing it once"
                    );
                    op(self.login(true).await?).await.map_err(|mut f| {
                        if is_oauth_refusal(&f) {
                            f.hint = HINT_OAUTH_REFUSED;
                            f.class = super::Class::Credentials;
                        }
                        f
                    })
                }
                other => other,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(timeout_failure(self.timeout.as_secs())))
    }

    /// Send raw RFC 5322 bytes to the envelope's recipients.
    pub async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Accepted, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore never closed");
        self.with_login(|login| async move { self.sessions.send(&login, envelope, bytes).await })
            .await
            .map(|resp| accepted(&resp))
    }

    /// Connect, TLS, EHLO and AUTH without sending anything.
    pub async fn test_connection(&self) -> Result<(), Failure> {
        self.with_login(|login| async move { self.sessions.test(&login).await })
            .await
    }
}

fn accepted(resp: &Response) -> Accepted {
    Accepted {
        code: u16::from(resp.code()),
        text: resp.message().collect::<Vec<_>>().join(" "),
    }
}
