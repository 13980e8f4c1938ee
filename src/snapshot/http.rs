//! HTTP with the snapshot limits, shared by every way of fetching a picture: a whole-request
//! timeout (`snapshot.timeout`), a body read chunk by chunk within `snapshot.max_bytes` (a
//! huge body is cut off, not buffered), and download slots ([`Slots`]): a picture's body is
//! read only with a slot, which it keeps until its last byte is dropped, after the image
//! worker is done with it. Requests still go out at once, so an unreachable camera waits on
//! its own connect timeout, never on another camera's slot.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::{error_chain, redact_url};

/// Limits of every snapshot download (from `snapshot.*`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Whole-request timeout (`snapshot.timeout`).
    pub timeout: Duration,
    /// Largest body read (`snapshot.max_bytes`).
    pub max_bytes: usize,
}

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
    /// A login was refused or is missing; `fix` names the config keys.
    #[error("{url}: {what}; {fix}")]
    Login {
        url: String,
        what: String,
        fix: String,
    },
    /// The camera answered 200 with something that is not a picture.
    #[error("GET {url}: the camera answered with an error instead of a picture: {message} (check {key})")]
    Camera {
        url: String,
        message: String,
        key: String,
    },
}

/// Successful bodies in memory at once, from their first byte until the image worker has
/// finished with them. In a motion storm on fifty cameras every picture is asked for at
/// once; without this bound each finished download (a 1080p frame is ~0.5 MB) would sit
/// in memory until one of the few image workers got to it.
pub type Slots = Arc<Semaphore>;

/// A body and the download slot it holds until the bytes are dropped.
struct Held {
    body: Vec<u8>,
    _slot: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// One HTTP answer, its body read within `snapshot.max_bytes`.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body of a 2xx answer, or a [`FetchError::Status`] quoting the start of the body.
    pub fn into_body(self, shown: &str) -> Result<Bytes, FetchError> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            .trim()
            .to_owned();
        Err(FetchError::Status {
            url: shown.to_owned(),
            status: self.status,
            body: if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            },
        })
    }
}

/// An HTTP client with the snapshot limits: whole-request timeout, bounded body.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    max_bytes: usize,
    timeout: Duration,
    slots: Slots,
}

impl Http {
    /// `insecure` accepts any server certificate (only for Frigate's self-signed one).
    pub fn new(
        settings: &HttpSettings,
        insecure: bool,
        slots: Slots,
    ) -> Result<Http, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("snapmail/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure)
            // No idle connections are kept. A kept connection holds on to hyper's read
            // buffer, which has grown to ~400 KB while it read a picture, and a burst runs up
            // to 16 connections at once: ~7 MB that stayed for as long as events kept coming
            // (the storm bench's peak RSS, 46 → 38 MB). A fresh connection costs a TCP
            // connect (a TLS handshake for https), small beside decoding the picture.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Http {
            client,
            max_bytes: settings.max_bytes,
            timeout: settings.timeout,
            slots,
        })
    }

    /// Send `req` and read the answer, whatever its status. `shown` is the URL for messages.
    pub async fn send(&self, req: RequestBuilder, shown: &str) -> Result<Answer, FetchError> {
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
        let mut resp = req.send().await.map_err(map_err)?;
        let status = resp.status();
        let announced = resp.content_length().unwrap_or(0);
        if announced > self.max_bytes as u64 {
            return Err(FetchError::TooLarge {
                url: shown.to_owned(),
                limit: self.max_bytes,
            });
        }
        let headers = resp.headers().clone();
        // Error answers are small and never reach an image worker: no slot for them (a
        // camera's 401 challenge must not hold one while its retry waits for another).
        let slot = if status.is_success() {
            Some(
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("download slots are never closed"),
            )
        } else {
            None
        };
        // Sized once from Content-Length (already bounded above) rather than grown by
        // doubling: a 500 KB snapshot then holds 500 KB, not a 1 MB buffer and its copies.
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge {
                    url: shown.to_owned(),
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let body = match slot {
            Some(slot) => Bytes::from_owner(Held { body, _slot: slot }),
            None => Bytes::from(body),
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Parse `url` for a request, keeping a printable form without credentials.
pub fn parse_url(url: &str) -> Result<(Url, String), FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::BadUrl {
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    Ok((parsed, redact_url(url)))
}
