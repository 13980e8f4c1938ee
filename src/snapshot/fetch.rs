//! Getting snapshot bytes: from Frigate's HTTP API, a URL, or the message itself.
//!
//! Downloads are bounded in time (`snapshot.timeout`) and size (`snapshot.max_bytes`, read
//! chunk by chunk so a huge body is cut off, not buffered). Frigate answers 404 while an
//! event's snapshot is not written yet, so a 404 is asked again a few times.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use tracing::debug;

use crate::config::Config;
use crate::event::SnapshotSource;

/// Why the snapshot bytes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} answered {status}{body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("GET {url} timed out after {secs}s (snapshot.timeout)")]
    Timeout { url: String, secs: u64 },
    #[error("GET {url} failed: {reason}")]
    Connect { url: String, reason: String },
    #[error("GET {url}: the body is larger than snapshot.max_bytes ({limit} bytes)")]
    TooLarge { url: String, limit: usize },
    #[error("{0}")]
    NoSource(String),
    #[error("bad snapshot URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// Downloads snapshots; one per process, sharing a connection pool.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    frigate_url: String,
    max_bytes: usize,
    timeout: Duration,
    retries_404: u32,
    retry_delay: Duration,
}

impl Fetcher {
    pub fn new(config: &Config) -> Result<Fetcher, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.snapshot.timeout.0)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("snapmail/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher {
            client,
            frigate_url: config.frigate.url.trim_end_matches('/').to_owned(),
            max_bytes: config.snapshot.max_bytes,
            timeout: config.snapshot.timeout.0,
            retries_404: config.frigate.snapshot_retries,
            retry_delay: config.frigate.snapshot_retry_delay.0,
        })
    }

    /// The bytes of the picture `source` names.
    pub async fn fetch(&self, source: &SnapshotSource) -> Result<Vec<u8>, FetchError> {
        match source {
            SnapshotSource::Inline(bytes) => Ok(bytes.clone()),
            SnapshotSource::None { reason } => Err(FetchError::NoSource(reason.clone())),
            SnapshotSource::Url(url) => self.get(url, 0).await,
            SnapshotSource::FrigateEvent { event_id } => {
                let url = format!("{}/api/events/{}/snapshot.jpg", self.frigate_url, event_id);
                self.get(&url, self.retries_404).await
            }
        }
    }

    async fn get(&self, url: &str, retries_404: u32) -> Result<Vec<u8>, FetchError> {
        let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        let shown = redact_url(url);
        let mut attempt = 0;
        loop {
            match self.get_once(parsed.clone(), &shown).await {
                Err(FetchError::Status { status, .. })
                    if status == StatusCode::NOT_FOUND && attempt < retries_404 =>
                {
                    attempt += 1;
                    debug!(url = %shown, attempt, "snapshot not there yet (404); asking again");
                    tokio::time::sleep(self.retry_delay).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self, url: Url, shown: &str) -> Result<Vec<u8>, FetchError> {
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    url: shown.to_owned(),
                    secs: self.timeout.as_secs(),
                }
            } else {
                FetchError::Connect {
                    url: shown.to_owned(),
                    reason: error_chain(&e),
                }
            }
        };
        let mut resp = self.client.get(url).send().await.map_err(map_err)?;
        let status = resp.status();
        if let Some(len) = resp.content_length() {
            if len > self.max_bytes as u64 {
                return Err(FetchError::TooLarge {
                    url: shown.to_owned(),
                    limit: self.max_bytes,
                });
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge {
                    url: shown.to_owned(),
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned();
            return Err(FetchError::Status {
                url: shown.to_owned(),
                status,
                body: if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                },
            });
        }
        Ok(body)
    }
}

/// `url` without any user name or password in it, for messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() || !u.username().is_empty() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("http://admin:s3cret@cam.lan/x"),
            "http://cam.lan/x"
        );
        assert_eq!(redact_url("http://cam.lan/x"), "http://cam.lan/x");
    }
}
