//! The SMTP transport: one process-wide pool of sessions ([`super::session`]), TLS by port,
//! AUTH with the app password (PLAIN/LOGIN) or an XOAUTH2 access token, and a hard timeout
//! around every send.
//!
//! [`Mailer::warm`] (or a [`Warmer`] handed to the pipeline) starts opening a session the
//! moment an event is going to be mailed, so TCP, TLS and EHLO overlap the snapshot fetch
//! and the send finds the session ready or nearly so. See `docs/smtp.md` for the round-trip
//! budget.
//!
//! With `smtp.auth: oauth2` the credentials change every hour: sessions logged in with an
//! older token are not reused. Gmail refuses a bad token with a `334` challenge and then
//! `535`; the send is then tried once more with a freshly refreshed token before the
//! failure is reported.
//!
//! Each send is wrapped in `tokio::time::timeout`, which bounds the connect, the TLS
//! handshake and every wait for a reply. At most `smtp.max_connections` sends run at once:
//! Gmail answers bursts of logins with `454 4.7.0 Too many login attempts`, and the pool
//! lets one session carry many mails.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::address::Envelope;
use tokio::sync::{Mutex, Semaphore};
use tracing::warn;

use super::classify::{
    is_oauth_refusal, oauth_failure, smtp_failure, timeout_failure, Failure, HINT_OAUTH_REFUSED,
};
use super::oauth::{OAuthError, TokenSource};
use super::session::{Endpoint, IdlePolicy, Login as SessionLogin, Logins, PoolStatus, Sessions};
use super::wire::{Credentials, Outgoing, SmtpError};
use crate::config::{AuthMethod, SmtpConfig};
use crate::secret::Secret;

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
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

/// Starts opening an SMTP session ahead of a mail; cheap to clone and to call.
#[derive(Clone)]
pub struct Warmer(Mailer);

impl Warmer {
    /// See [`Mailer::warm`].
    pub fn warm(&self) {
        self.0.warm();
    }
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

impl Login {
    /// The login to use now: for XOAUTH2, with a current (or, with `fresh`, a
    /// just-refreshed) access token and the generation of that token.
    async fn get(&self, fresh: bool) -> Result<SessionLogin, Failure> {
        match self {
            Login::Password(c) => Ok(SessionLogin {
                credentials: c.clone(),
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
                    credentials: Credentials {
                        username: o.username.clone(),
                        secret: token,
                        xoauth2: true,
                    },
                    generation: current.1,
                })
            }
        }
    }
}

impl Logins for Login {
    fn current(&self) -> BoxFuture<'_, Result<SessionLogin, Failure>> {
        Box::pin(self.get(false))
    }
}

/// The TLS trust for `smtp`: the public roots plus `smtp.ca_file` (read here).
pub fn tls_config(smtp: &SmtpConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    crate::tls::client_config(smtp.ca_file.as_deref(), "smtp.ca_file").map(Arc::new)
}

impl Mailer {
    pub fn new(smtp: &SmtpConfig) -> Result<Mailer, TransportError> {
        Mailer::with_idle_policy(smtp, IdlePolicy::default())
    }

    /// A mailer that keeps idle sessions as `idle` says (tests use short intervals).
    pub fn with_idle_policy(smtp: &SmtpConfig, idle: IdlePolicy) -> Result<Mailer, TransportError> {
        let tls = tls_config(smtp).map_err(|reason| TransportError::Tls {
            host: smtp.host.clone(),
            reason,
        })?;
        Mailer::build(smtp, tls, idle)
    }

    /// A mailer using `tls`, the trust [`tls_config`] resolved for `smtp` beforehand.
    pub fn with_tls(
        smtp: &SmtpConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Mailer, TransportError> {
        Mailer::build(smtp, tls, IdlePolicy::default())
    }

    fn build(
        smtp: &SmtpConfig,
        tls: Arc<rustls::ClientConfig>,
        idle: IdlePolicy,
    ) -> Result<Mailer, TransportError> {
        let login = match smtp.auth {
            AuthMethod::Password => Login::Password(Credentials {
                username: smtp.username.clone(),
                secret: smtp.app_password(),
                xoauth2: false,
            }),
            AuthMethod::Oauth2 => Login::OAuth(Box::new(OAuthLogin {
                username: smtp.username.clone(),
                tokens: TokenSource::new(&smtp.oauth2, smtp.timeout.0)?,
                current: Mutex::new((None, 0)),
            })),
        };
        let max = smtp.max_connections as usize;
        let login = Arc::new(login);
        Ok(Mailer {
            sessions: Sessions::new(
                Endpoint {
                    host: smtp.host.clone(),
                    port: smtp.port.0,
                    security: smtp.security(),
                    tls,
                },
                max,
                smtp.timeout.0,
                idle,
                login.clone(),
            ),
            login,
            permits: Arc::new(Semaphore::new(max)),
            timeout: smtp.timeout.0,
        })
    }

    /// The token source, when logging in with XOAUTH2 (for `doctor`).
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &*self.login {
            Login::OAuth(o) => Some(&o.tokens),
            Login::Password(_) => None,
        }
    }

    /// A handle for the pipeline: [`Warmer::warm`] when an event is going to be mailed.
    pub fn warmer(&self) -> Warmer {
        Warmer(self.clone())
    }

    /// A mail is coming: start opening a session in the background if none is kept or
    /// being opened (and `smtp.max_connections` leaves room, and the last opening did not
    /// fail), and keep sessions for the idle policy's `keep_for` from now. Returns at once;
    /// the next send takes the session over, finished or not. Without a tokio runtime it
    /// opens nothing.
    pub fn warm(&self) {
        self.sessions.warm();
    }

    /// What the session pool holds now.
    pub fn status(&self) -> PoolStatus {
        self.sessions.status()
    }

    /// Round trips spent on SMTP so far (see [`Sessions::round_trips`]).
    pub fn round_trips(&self) -> u64 {
        self.sessions.round_trips()
    }

    async fn login(&self, fresh: bool) -> Result<SessionLogin, Failure> {
        self.login.get(fresh).await
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
        let mail = Outgoing {
            from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
            to: envelope.to().iter().map(|a| a.to_string()).collect(),
            body: bytes,
        };
        let sent = self
            .with_login(|login| {
                let mail = &mail;
                async move { self.sessions.send(&login, mail).await }
            })
            .await?;
        for (to, reply) in &sent.refused {
            let f = smtp_failure(&SmtpError::Refused {
                stage: super::wire::Stage::Rcpt,
                reply: reply.clone(),
            });
            warn!(recipient = %to, "smtp: the server took the mail for the other recipients but refused {to}: {f}");
        }
        Ok(Accepted {
            code: sent.reply.code,
            text: sent.reply.text(),
        })
    }

    /// Connect, TLS, EHLO and AUTH without sending anything.
    pub async fn test_connection(&self) -> Result<(), Failure> {
        self.with_login(|login| async move { self.sessions.test(&login).await })
            .await
    }
}
