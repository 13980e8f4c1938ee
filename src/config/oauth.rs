//! The SMTP login method (`smtp.auth`) and the XOAUTH2 client settings (`smtp.oauth2.*`).
//!
//! `password` (the default) logs in with the Gmail app password. `oauth2` logs in with an
//! access token that snapmail obtains from `smtp.oauth2.token_url` using a long-lived
//! refresh token, so no password is stored at all.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::types;
use crate::secret::Secret;

/// Google's token endpoint; tests and other providers point `token_url` elsewhere.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// How snapmail logs in to the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// AUTH PLAIN/LOGIN with `smtp.password` (a Gmail app password).
    #[default]
    Password,
    /// AUTH XOAUTH2 with an access token refreshed from `smtp.oauth2.refresh_token`.
    Oauth2,
}

impl<'de> Deserialize<'de> for AuthMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        types::choice(
            d,
            &[
                ("password", AuthMethod::Password),
                ("oauth2", AuthMethod::Oauth2),
            ],
            "use password (a Gmail app password) or oauth2",
        )
    }
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Oauth2 => "oauth2",
        }
    }
}

/// `smtp.oauth2`: an OAuth client ("Desktop app" in Google Cloud) and its refresh token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub refresh_token: Option<Secret>,
    pub refresh_token_file: Option<PathBuf>,
    /// Where refresh tokens are exchanged for access tokens.
    pub token_url: String,
}

impl Default for OAuth2Config {
    fn default() -> Self {
        OAuth2Config {
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            refresh_token: None,
            refresh_token_file: None,
            token_url: GOOGLE_TOKEN_URL.into(),
        }
    }
}

impl OAuth2Config {
    /// Cross-field checks for `smtp.auth: oauth2`; errors name the key and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.client_id.trim().is_empty() {
            return Err("smtp.oauth2.client_id: not set; smtp.auth is oauth2, so give the client ID of your OAuth client (Google Cloud console → Credentials)".into());
        }
        if self.client_secret.is_none() {
            return Err("smtp.oauth2.client_secret: not set; give it in smtp.oauth2.client_secret, smtp.oauth2.client_secret_file or SNAPMAIL__SMTP__OAUTH2__CLIENT_SECRET".into());
        }
        if self.refresh_token.is_none() {
            return Err("smtp.oauth2.refresh_token: not set; give it in smtp.oauth2.refresh_token, smtp.oauth2.refresh_token_file or SNAPMAIL__SMTP__OAUTH2__REFRESH_TOKEN".into());
        }
        match reqwest::Url::parse(self.token_url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
            _ => Err(format!(
                "smtp.oauth2.token_url: {:?} is not an http(s) URL; Google's is {GOOGLE_TOKEN_URL}",
                self.token_url
            )),
        }
    }
}
