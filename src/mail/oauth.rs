//! XOAUTH2 access tokens: exchanged at `smtp.oauth2.token_url` for the configured refresh
//! token, cached, and refreshed shortly before they expire.
//!
//! Google's access tokens live about an hour. A token is refreshed when less than a minute
//! (or half its lifetime, for short-lived tokens) is left, so a send never starts with a
//! token that expires mid-session. When the SMTP server still refuses a token, the caller
//! forces one refresh ([`TokenSource::refresh`]) and reports the second refusal.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::debug;

use crate::config::OAuth2Config;
use crate::secret::Secret;

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("smtp.oauth2.refresh_token: the token endpoint refused it ({code}: {description}); the refresh token is expired or revoked — create a new one (apps left in \"Testing\" get tokens that expire after 7 days; changing the Google password revokes them)")]
    Revoked { code: String, description: String },
    #[error("smtp.oauth2.client_id / smtp.oauth2.client_secret: the token endpoint refused the client ({code}: {description}); copy both from the OAuth client in the Google Cloud console")]
    Client { code: String, description: String },
    #[error("smtp.oauth2.token_url: {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("smtp.oauth2.token_url: cannot reach {url}: {reason}; check the URL and the network")]
    Connect { url: String, reason: String },
    #[error("smtp.oauth2.token_url: {url} answered something that is not a token ({reason})")]
    BadResponse { url: String, reason: String },
    #[error("smtp.oauth2: cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl OAuthError {
    /// Whether waiting could help (endpoint down or overloaded), as opposed to a wrong setting.
    pub fn is_transient(&self) -> bool {
        match self {
            OAuthError::Connect { .. } => true,
            OAuthError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A fresh access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Lifetime the endpoint announced.
    pub expires_in: Duration,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Hands out access tokens for one OAuth client and refresh token.
pub struct TokenSource {
    client: reqwest::Client,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    token_url: String,
    cached: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Refresh when this much of the token's life is left (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl TokenSource {
    pub fn new(cfg: &OAuth2Config, timeout: Duration) -> Result<TokenSource, OAuthError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("snapmail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Setup(e.to_string()))?;
        Ok(TokenSource {
            client,
            client_id: cfg.client_id.trim().to_owned(),
            client_secret: cfg.client_secret.clone().unwrap_or_default(),
            refresh_token: cfg.refresh_token.clone().unwrap_or_default(),
            token_url: cfg.token_url.trim().to_owned(),
            cached: Mutex::new(None),
        })
    }

    /// The cached access token, refreshed first if it is missing or about to expire.
    pub async fn token(&self) -> Result<Secret, OAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(Self::cache(fresh));
        Ok(token)
    }

    /// Get a new access token now, whatever the cache holds.
    pub async fn refresh(&self) -> Result<AccessToken, OAuthError> {
        let mut cached = self.cached.lock().await;
        let fresh = self.fetch().await?;
        *cached = Some(Self::cache(fresh.clone()));
        Ok(fresh)
    }

    fn cache(fresh: AccessToken) -> Cached {
        let margin = REFRESH_MARGIN.min(fresh.expires_in / 2);
        Cached {
            token: fresh.token,
            refresh_at: Instant::now() + fresh.expires_in.saturating_sub(margin),
        }
    }

    async fn fetch(&self) -> Result<AccessToken, OAuthError> {
        let url = &self.token_url;
        debug!(token_url = %url, "oauth2: refreshing the access token");
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        let resp = self
            .client
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuthError::Connect {
                url: url.clone(),
                reason: crate::errors::error_chain(&e),
            })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| OAuthError::Connect {
            url: url.clone(),
            reason: crate::errors::error_chain(&e),
        })?;
        let reply: Option<TokenReply> = serde_json::from_str(&text).ok();
        if let Some(TokenReply {
            error: Some(code),
            error_description,
            ..
        }) = &reply
        {
            let description = error_description.clone().unwrap_or_default();
            return Err(match code.as_str() {
                "invalid_grant" => OAuthError::Revoked {
                    code: code.clone(),
                    description,
                },
                "invalid_client" | "unauthorized_client" => OAuthError::Client {
                    code: code.clone(),
                    description,
                },
                _ => OAuthError::Status {
                    url: url.clone(),
                    status,
                    body: format!("{code}: {description}"),
                },
            });
        }
        if !(200..300).contains(&status) {
            return Err(OAuthError::Status {
                url: url.clone(),
                status,
                body: text.chars().take(200).collect::<String>().trim().to_owned(),
            });
        }
        match reply {
            Some(TokenReply {
                access_token: Some(token),
                expires_in,
                ..
            }) if !token.is_empty() => Ok(AccessToken {
                token: Secret::new(token),
                // Google always sends expires_in; without it, assume its usual hour.
                expires_in: Duration::from_secs(expires_in.unwrap_or(3600)),
            }),
            _ => Err(OAuthError::BadResponse {
                url: url.clone(),
                reason: "no access_token in the reply".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_at_most_half_the_lifetime() {
        let long = TokenSource::cache(AccessToken {
            token: Secret::new("a"),
            expires_in: Duration::from_secs(3600),
        });
        let d = long.refresh_at - Instant::now();
        assert!(d <= Duration::from_secs(3540) && d > Duration::from_secs(3500));
        let short = TokenSource::cache(AccessToken {
            token: Secret::new("a"),
            expires_in: Duration::from_secs(0),
        });
        assert!(short.refresh_at <= Instant::now());
    }
}
